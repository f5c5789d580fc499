//! The server under load: a few gRPC connections to it, and what it serves.

use anyhow::Context;
use facegate_api::v1::matcher_client::MatcherClient;
use facegate_api::v1::{GalleryInfo, GetGalleryInfoRequest};
use tonic::transport::{Channel, Endpoint};

/// A server to load: a few gRPC connections and what it serves.
pub struct Target {
    clients: Vec<MatcherClient<Channel>>,
    info: GalleryInfo,
}

impl Target {
    /// Opens `connections` separate HTTP/2 connections to `addr` (ports share
    /// them round-robin, as a port concentrator's few links would be) and
    /// asks the server what it serves, for the model tag and dimension.
    pub async fn connect(addr: &str, connections: usize) -> anyhow::Result<Target> {
        anyhow::ensure!(connections > 0, "--connections must be at least 1");
        let endpoint = Endpoint::from_shared(addr.to_string())
            .with_context(|| format!("server address {addr:?}"))?;
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            clients.push(MatcherClient::new(channel));
        }
        let info = clients[0]
            .clone()
            .get_gallery_info(GetGalleryInfoRequest {})
            .await
            .with_context(|| format!("GetGalleryInfo from {addr}"))?
            .into_inner();
        Ok(Target { clients, info })
    }

    /// One client per connection; clones share the connection.
    pub fn clients(&self) -> &[MatcherClient<Channel>] {
        &self.clients
    }

    /// What the server reported at connection time.
    pub fn info(&self) -> &GalleryInfo {
        &self.info
    }
}
