//! The facegate gRPC matching server, as a library so that integration tests
//! and example clients share the generated API types.
//!
//! Layers, from the wire inwards: [`matcher`] (the tonic service: decoding,
//! validation, status codes) calls [`state::ServingState`] (the gallery and
//! the engine in use), which calls a `facegate_core` engine.

pub mod config;
pub mod deadline;
pub mod demo;
pub mod matcher;
pub mod metrics;
pub mod serve;
pub mod state;

/// Types and clients generated from proto/facegate/v1/matcher.proto.
pub mod proto {
    #![allow(missing_docs)]
    tonic::include_proto!("facegate.v1");

    /// The encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/facegate_descriptor.bin"));
}
