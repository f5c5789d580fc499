//! The facegate gRPC matching server, as a library so that integration tests
//! and example clients share the generated API types.
//!
//! Layers, from the wire inwards: [`matcher`] (the tonic service: decoding,
//! validation, status codes) calls [`state::ServingState`] (the gallery and
//! request semantics), which queues 1:N searches with the batching
//! [`dispatch::Dispatcher`]; its thread runs batches on [`engines::Engines`]
//! (GPU or exact CPU, from `facegate_core` and `facegate_gpu`). Online
//! changes arrive through [`admin`] (the GalleryAdmin service), which
//! commits them with [`changes::GalleryChanges`]: the change log under
//! `--data-dir` and the live gallery (base + delta + tombstones) that
//! searches read.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod changes;
pub mod config;
pub mod deadline;
pub mod demo;
pub mod dispatch;
pub mod engines;
pub mod generation;
pub mod matcher;
pub mod metrics;
pub mod reload;
pub mod request;
pub mod serve;
pub mod state;
pub mod status;

/// Types and clients generated from proto/facegate/v1/{matcher,admin}.proto.
pub mod proto {
    #![allow(missing_docs)]
    tonic::include_proto!("facegate.v1");

    /// The encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/facegate_descriptor.bin"));
}
