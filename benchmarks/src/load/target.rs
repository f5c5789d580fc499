//! The server under load: a few gRPC connections to it, and what it serves.

use anyhow::Context;
use facegate_api::v1::matcher_client::MatcherClient;
use facegate_api::v1::{GalleryInfo, GetGalleryInfoRequest};
use std::path::PathBuf;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// TLS to the server: the CA that issued its certificate, the name to
/// check it against, and for mutual TLS the port's certificate and key
/// (PEM files), so that a run measures what a deployed port pays.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA bundle the server's certificate must chain to.
    pub ca: PathBuf,
    /// The name the server's certificate must carry.
    pub domain: String,
    /// The client's certificate and key, for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// tonic's client TLS config from the files.
    pub fn config(&self) -> anyhow::Result<ClientTlsConfig> {
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .domain_name(self.domain.clone());
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(tls)
    }
}

/// A server to load: a few gRPC connections and what it serves.
pub struct Target {
    clients: Vec<MatcherClient<Channel>>,
    info: GalleryInfo,
}

impl Target {
    /// Opens `connections` separate HTTP/2 connections to `addr` (ports share
    /// them round-robin, as a port concentrator's few links would be) and
    /// asks the server what it serves, for the model tag and dimension;
    /// over TLS when `tls` is given (an `https://` address).
    pub async fn connect(
        addr: &str,
        connections: usize,
        tls: Option<&TlsFiles>,
    ) -> anyhow::Result<Target> {
        anyhow::ensure!(connections > 0, "--connections must be at least 1");
        let mut endpoint = Endpoint::from_shared(addr.to_string())
            .with_context(|| format!("server address {addr:?}"))?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.config()?)?;
        }
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
