//! Identify and verify one probe against a running facegate, from Rust.
//!
//!     cargo run --release -p facegate-api --example identify [-- http://127.0.0.1:50051]
//!
//! It depends only on the API crate (and on facegate-core for the demo
//! population), as a port's client would: not on the server.
//!
//! The probe is a fresh capture of an enrolled demo subject (the demo
//! population is deterministic), so against the README's demo server the
//! true subject should come back first. Against a server with `--port-keys`,
//! set `FACEGATE_TOKEN` to a key made by `facegate keygen DEMO-PORT`.

use facegate_api::v1::matcher_client::MatcherClient;
use facegate_api::v1::{
    CaptureContext, Direction, GetGalleryInfoRequest, IdentifyRequest, VerifyRequest,
};
use facegate_core::synth::{Synth, SynthConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let channel = tonic::transport::Endpoint::from_shared(addr)?
        .connect()
        .await?;
    let token = std::env::var("FACEGATE_TOKEN")
        .ok()
        .map(|t| format!("Bearer {t}").parse::<tonic::metadata::MetadataValue<_>>())
        .transpose()?;
    let mut client = MatcherClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(t) = &token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        Ok(req)
    });
    let info = client
        .get_gallery_info(GetGalleryInfoRequest {})
        .await?
        .into_inner();
    println!(
        "gallery: {} subjects, {} templates, d={}, model {}, engine {}",
        info.subjects, info.rows, info.dimension, info.model_tag, info.engine
    );
    // The first mated probe of the demo population (80 % are); the generator knows its truth.
    let synth = Synth::new(SynthConfig::demo())?;
    let probe = (0..synth.config().probes)
        .map(|j| synth.probe(j))
        .find(|p| p.mate.is_some())
        .ok_or_else(|| anyhow::anyhow!("the demo population has no mated probe"))?;
    let resp = client
        .identify(IdentifyRequest {
            probe: probe.vector.clone(),
            top_k: 3,
            request_id: "rust-1".into(),
            model_tag: info.model_tag.clone(),
            capture: Some(CaptureContext {
                port_id: "DEMO-PORT".into(),
                lane: "1".into(),
                direction: Direction::Entry as i32,
                captured_at_unix_ms: 0,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!(
        "identify: match={} (threshold {:.2})",
        resp.r#match, resp.threshold
    );
    for c in &resp.candidates {
        println!("  rank {}: {} score {:.3}", c.rank, c.subject_id, c.score);
    }
    if let Some(mate) = probe.mate {
        let id = Synth::subject_id(mate);
        let v = client
            .verify(VerifyRequest {
                probe: probe.vector,
                subject_id: id.clone(),
                model_tag: info.model_tag,
                ..Default::default()
            })
            .await?
            .into_inner();
        println!(
            "verify against the true subject {id}: match={} score {:.3}",
            v.r#match, v.score
        );
    }
    Ok(())
}
