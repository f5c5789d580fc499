//! Where the database is, as errors and logs name it, and PostgreSQL's
//! failures as the store interface's errors: transient (retry) or not.

use std::fmt;

use facegate_core::encounter::EncounterError;

/// The database's host, port and name: what errors and logs say, never
/// the password a connection URL may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location(String);

impl Location {
    /// The location of `config`'s first host.
    pub fn of(config: &postgres::Config) -> Location {
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres");
        Location(format!("{host}:{port}/{db}"))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Maps a client error at `at` to the store's error, its reason and
/// whether it is transient as `classify` says.
pub fn remote(at: &Location) -> impl Fn(postgres::Error) -> EncounterError + '_ {
    move |e| {
        let (reason, transient) = classify(&e);
        EncounterError::Remote {
            location: at.to_string(),
            reason,
            transient,
        }
    }
}

/// What a refused TLS handshake's reason starts with, so that the pool's
/// errors, which keep only their text, can be classed as the writer's are.
const TLS_REFUSED: &str = "TLS refused";

/// `e`'s reason and whether it is transient. A server's error says its
/// message and code, and is transient for a lost connection, a server
/// shutting down or out of resources, or a serialisation failure. Any
/// other failure (the socket failed, or the server never answered) is
/// transient, except a TLS handshake the client refused (an unverified
/// server, or one without TLS): retrying cannot make that server trusted.
pub(crate) fn classify(e: &postgres::Error) -> (String, bool) {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // Class 08: connection exception; 53: insufficient resources;
        // 57P0x: shutdown, crash, cannot connect now; 40001, 40P01:
        // serialisation failure, deadlock.
        let transient = ["08", "53", "57P", "40001", "40P01"]
            .iter()
            .any(|p| code.starts_with(p));
        return (format!("{} ({code})", db.message()), transient);
    }
    match is_tls_refusal(e) {
        true => (format!("{TLS_REFUSED}: {}", with_causes(e)), false),
        false => (with_causes(e), true),
    }
}

/// Whether `e` is the client refusing the TLS handshake: rustls' verdict
/// on the server's certificate, or the client's own refusal (a server
/// without TLS, no host name to verify), not a socket failing during it.
fn is_tls_refusal(e: &postgres::Error) -> bool {
    // The client's own text for its TLS error kind, which it does not expose.
    if !e.to_string().starts_with("error performing TLS handshake") {
        return false;
    }
    let Some(cause) = std::error::Error::source(e) else {
        return true;
    };
    match cause.downcast_ref::<std::io::Error>() {
        Some(io) => io
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>()),
        None => true,
    }
}

/// `e`'s text and its causes': the client's own says only "error
/// performing TLS handshake", its cause why (an unknown issuer, a
/// certificate for another host).
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Whether `e` is a deadlock or a serialisation failure: another
/// transaction won, and the statement may simply be run again.
pub fn is_lock_conflict(e: &postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(c.code(), "40P01" | "40001"))
}

/// A row no write of this store could have made: damage, never trusted.
pub fn damaged(at: &Location, what: String) -> EncounterError {
    EncounterError::Remote {
        location: at.to_string(),
        reason: format!("damaged row: {what}"),
        transient: false,
    }
}

/// The pool could not hand out a connection in time: the server is
/// unreachable, every connection is busy (both transient), or the
/// server's TLS was refused (not).
pub fn pool(at: &Location) -> impl Fn(r2d2::Error) -> EncounterError + '_ {
    move |e| {
        let reason = format!("no connection: {e}");
        EncounterError::Remote {
            location: at.to_string(),
            transient: !reason.contains(TLS_REFUSED),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    use rustls::{ClientConfig, RootCertStore};
    use tokio_postgres_rustls::MakeRustlsConnect;

    use super::*;

    /// The error of a TLS connection to a listener that reads the client's
    /// SSLRequest and then does what `answer` does.
    fn connect_to(answer: impl FnOnce(std::net::TcpStream) + Send + 'static) -> postgres::Error {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 8];
            stream.read_exact(&mut request).unwrap();
            answer(stream);
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        let mut config = postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user("facegate")
            .ssl_mode(postgres::config::SslMode::Require);
        let Err(e) = config.connect(MakeRustlsConnect::new(tls)) else {
            panic!("connected to a listener that speaks no PostgreSQL");
        };
        server.join().unwrap();
        e
    }

    #[test]
    fn a_refused_handshake_is_permanent_and_a_dropped_one_transient() {
        let no_tls = connect_to(|mut s| s.write_all(b"N").unwrap());
        let (reason, transient) = classify(&no_tls);
        assert!(!transient, "{reason}");
        assert_eq!(
            reason,
            "TLS refused: error performing TLS handshake: server does not support TLS"
        );
        // The server agrees to TLS, then answers the hello with bytes that
        // are no TLS record: rustls' verdict, permanent.
        let garbage = connect_to(|mut s| s.write_all(b"S\x00\x00\x00\x00\x00").unwrap());
        let (reason, transient) = classify(&garbage);
        assert!(!transient && reason.starts_with(TLS_REFUSED), "{reason}");
        // The server agrees, then the connection drops: the socket failed,
        // which a retry may get past.
        let dropped = connect_to(|mut s| s.write_all(b"S").unwrap());
        let (reason, transient) = classify(&dropped);
        assert!(transient && !reason.contains(TLS_REFUSED), "{reason}");
    }
}
