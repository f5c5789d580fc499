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

/// Maps a client error at `at` to the store's error, transient or not
/// ([`is_transient`]).
pub fn remote(at: &Location) -> impl Fn(postgres::Error) -> EncounterError + '_ {
    move |e| {
        // A server's error says more than "db error": its message and code.
        let reason = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => with_causes(&e),
        };
        EncounterError::Remote {
            location: at.to_string(),
            reason,
            transient: is_transient(&e),
        }
    }
}

/// `e`'s text and its causes': the client's own says only "error
/// performing TLS handshake", its cause why (an unknown issuer, a
/// certificate for another host).
fn with_causes(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Lost connections, a server shutting down or out of resources, and
/// serialisation failures are transient; a refused statement is not, nor
/// a failed TLS handshake (an unverified server, or one without TLS):
/// retrying cannot make that server trusted.
fn is_transient(e: &postgres::Error) -> bool {
    // The client's own text for its TLS error kind, which it does not expose.
    if e.to_string().starts_with("error performing TLS handshake") {
        return false;
    }
    e.is_closed()
        || match e.code() {
            // Class 08: connection exception; 53: insufficient resources;
            // 57P0x: shutdown, crash, cannot connect now; 40001, 40P01:
            // serialisation failure, deadlock.
            Some(code) => ["08", "53", "57P", "40001", "40P01"]
                .iter()
                .any(|p| code.code().starts_with(p)),
            // No SQLSTATE: the socket failed, or the server never answered.
            None => e.as_db_error().is_none(),
        }
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
/// unreachable or every connection is busy.
pub fn pool(at: &Location) -> impl Fn(r2d2::Error) -> EncounterError + '_ {
    move |e| EncounterError::Remote {
        location: at.to_string(),
        reason: format!("no connection: {e}"),
        transient: true,
    }
}
