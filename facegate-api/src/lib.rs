//! The facegate gRPC API as a small crate of its own: the messages, tonic
//! clients and tonic servers generated from `proto/facegate/v1/*.proto`,
//! and the encoded descriptor set that server reflection serves.
//!
//! It exists so that clients (the load generator in `benchmarks/`, the
//! example client, port integrations) get the API without linking the
//! server and what the server pulls in (wgpu, axum, prometheus). The server
//! builds on it too, so both sides compile the same generated code.
//!
//! Everything lives under [`v1`], named after the proto package
//! `facegate.v1`, so that a future `facegate.v2` can sit beside it:
//!
//! ```no_run
//! use facegate_api::v1::matcher_client::MatcherClient;
//! use facegate_api::v1::GetGalleryInfoRequest;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut client = MatcherClient::connect("http://127.0.0.1:50051").await?;
//! let info = client.get_gallery_info(GetGalleryInfoRequest {}).await?.into_inner();
//! println!("{} subjects", info.subjects);
//! # Ok(())
//! # }
//! ```

/// Types, clients (`matcher_client`, `gallery_admin_client`,
/// `manifests_client`) and servers (`matcher_server`, `gallery_admin_server`,
/// `manifests_server`) generated from
/// `proto/facegate/v1/{matcher,admin,manifests}.proto`; the proto's comments
/// are their documentation.
pub mod v1 {
    #![allow(missing_docs)]
    tonic::include_proto!("facegate.v1");

    /// The encoded `FileDescriptorSet` of `facegate.v1`, for the server to
    /// register with gRPC reflection (so grpcurl needs no .proto files).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/facegate_descriptor.bin"));
}
