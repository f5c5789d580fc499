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

/// The pushback a server attaches to a refusal for load, as gRPC's retry
/// design (A6) defines it: the `grpc-retry-pushback-ms` trailer, how many
/// milliseconds the client should wait before it sends again. facegate sets
/// it on every RESOURCE_EXHAUSTED that the dispatcher sheds, from the queue
/// wait that made it refuse: a port that resends at once (a closed loop with
/// no pause) turns each refusal into another, and the refusals' own CPU
/// then slows the searches that made room for it.
pub mod pushback {
    use std::time::Duration;

    /// The metadata key (a trailer; tonic gives a trailers-only error's
    /// trailers as the status's metadata).
    pub const HEADER: &str = "grpc-retry-pushback-ms";

    /// The pushback in `status`, if it has a well-formed one (a
    /// non-negative decimal number of milliseconds).
    pub fn of(status: &tonic::Status) -> Option<Duration> {
        let value = status.metadata().get(HEADER)?.to_str().ok()?;
        value.parse::<u64>().ok().map(Duration::from_millis)
    }

    /// Attaches a pushback of `wait` (rounded up to whole milliseconds) to
    /// `status`.
    pub fn attach(status: &mut tonic::Status, wait: Duration) {
        let ms = u64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        status.metadata_mut().insert(HEADER, ms.into());
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_pushback_reads_back_as_attached_and_a_malformed_one_is_none() {
            let mut s = tonic::Status::resource_exhausted("busy");
            assert_eq!(of(&s), None);
            attach(&mut s, Duration::from_micros(120_400));
            assert_eq!(of(&s), Some(Duration::from_millis(121)));
            s.metadata_mut().insert(HEADER, "-5".parse().unwrap());
            assert_eq!(of(&s), None, "negative");
        }
    }
}
