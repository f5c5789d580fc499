//! The accept loop of a TLS listener: each TCP connection is handshaken
//! with the listener's current config (taken per connection, so a reload
//! reaches new connections only) on its own task, within a time limit, and
//! handed to tonic once it is done. A refused handshake (an untrusted or
//! expired client certificate, a client speaking plain text) is counted
//! and logged with the peer's address and reason; it never reaches a
//! handler.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::metrics::Metrics;

/// The TLS config a new connection gets now (`None`: stop accepting); the
/// listener's credentials hold it and swap it on reload.
pub type CurrentConfig = Arc<dyn Fn() -> Option<Arc<rustls::ServerConfig>> + Send + Sync>;

/// How long a client has to finish its handshake: a stalled one holds a
/// task and a socket, nothing more, and not for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for tonic to take them.
const BACKLOG: usize = 128;

/// The stream of the connections of the listener `name` ("ports",
/// "admin"), TLS done with `config`'s config of the moment, for
/// `serve_with_incoming`. The loop ends when tonic drops the stream.
pub fn incoming(
    listener: TcpListener,
    name: &'static str,
    config: CurrentConfig,
    metrics: Arc<Metrics>,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    for reason in FAILURE_REASONS {
        metrics
            .tls_handshake_failures
            .with_label_values(&[name, reason]);
    }
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors and the like: back off a little
                    // rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(config) = config() else {
                return;
            };
            let (tx, metrics, listener) = (tx.clone(), metrics.clone(), name);
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let handshake = TlsAcceptor::from(config).accept(tcp);
                let reason = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(listener, %peer, error = %e, "TLS handshake refused");
                        failure_reason(&e)
                    }
                    Err(_) => "timeout",
                };
                metrics
                    .tls_handshake_failures
                    .with_label_values(&[listener, reason])
                    .inc();
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Every reason `failure_reason` gives (or `timeout`): the metric's
/// series are made at zero when the listener starts, so that a dashboard
/// shows a refusal rate of 0 rather than no data.
pub const FAILURE_REASONS: &[&str] = &[
    "expired",
    "unknown_issuer",
    "revoked",
    "bad_certificate",
    "timeout",
    "other",
];

/// A handshake error's label: the client certificate's faults by name, the
/// rest as `other`.
fn failure_reason(error: &std::io::Error) -> &'static str {
    use rustls::CertificateError as C;
    let Some(rustls::Error::InvalidCertificate(cert)) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return "other";
    };
    match cert {
        C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
            "expired"
        }
        C::UnknownIssuer => "unknown_issuer",
        C::Revoked => "revoked",
        _ => "bad_certificate",
    }
}
