//! [`PgEncounters`]: the encounter store in a PostgreSQL database that
//! several nodes share. Writes go through this node's writer thread (group
//! commit, `writer`); reads take a pooled connection, so a long report
//! never holds up a port's record.

use std::str::FromStr;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::connector::Connector;
use crate::error::{Location, classify, pool, remote, with_causes};
use crate::reads;
use crate::tls::{StoreTls, StoreTlsError};
use crate::writer::{self, CommitStats, Op};
use facegate_core::clock::UnixMillis;
use facegate_core::encounter::{
    Category, Correction, Encounter, EncounterError, EncounterStore, Erasure, Movement, Oldest,
    PurgeLead, RecordReply, Recorded, StoredEncounter, SubjectPage, Traveller,
};

/// Writes that may wait for the writer: a port's record past them is
/// refused at once (`Overloaded`); other writes wait for room.
const QUEUE: usize = 4_096;
/// Pooled connections for reads, per node.
const READERS: u32 = 8;
/// The advisory lock key of the retention purge ("fgpurge" in ASCII).
const PURGE_LOCK: i64 = 0x0066_6770_7572_6765;

type Pool = r2d2::Pool<Manager>;
type Pooled = r2d2::PooledConnection<Manager>;

/// The read pool's connections: made with the store's connector as it is
/// at the time (so a reload reaches the pool), and failing with errors
/// that keep their causes and their class (r2d2 passes on only an error's
/// text, and a refused TLS handshake's own text says only "error
/// performing TLS handshake").
struct Manager {
    config: postgres::Config,
    tls: Connector,
}

/// A connection the pool could not make or keep, as `classify` tells it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ConnectFailed(String);

impl r2d2::ManageConnection for Manager {
    type Connection = postgres::Client;
    type Error = ConnectFailed;

    fn connect(&self) -> Result<postgres::Client, ConnectFailed> {
        self.config
            .connect(self.tls.current())
            .map_err(|e| ConnectFailed(classify(&e).0))
    }

    /// An empty query, as r2d2_postgres checks a connection.
    fn is_valid(&self, conn: &mut postgres::Client) -> Result<(), ConnectFailed> {
        conn.simple_query("")
            .map(|_| ())
            .map_err(|e| ConnectFailed(classify(&e).0))
    }

    fn has_broken(&self, conn: &mut postgres::Client) -> bool {
        conn.is_closed()
    }
}

/// How long an unanswered TCP connect to the database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long data sent to the database may stay unacknowledged before the
/// kernel drops the connection (`TCP_USER_TIMEOUT`).
const USER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a connection may be idle before its keepalive probes start.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// Bounds how long a connection to a database that stopped answering at
/// the network level (a partition, a host gone) stays in use: without
/// this a write blocked on one is noticed only after the kernel's
/// retransmissions (about 15 minutes) and an idle pooled one after two
/// hours of keepalive silence. With `TCP_USER_TIMEOUT` set, Linux drops a
/// connection whose keepalive probe stays unanswered that long, so an idle
/// one goes after about 30 + 15 s (the probe count does not apply). The
/// URL's own `tcp_user_timeout` and `keepalives_*` win over these. A
/// database whose host still answers TCP but whose server hangs is
/// bounded by the request path instead (its record timeout).
fn bound_connections(config: &mut postgres::Config) {
    config.connect_timeout(CONNECT_TIMEOUT);
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(USER_TIMEOUT);
    }
    // tokio-postgres's own default, two hours, means the URL left it unset.
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(10));
    }
}

/// The shared PostgreSQL encounter store.
pub struct PgEncounters {
    at: Location,
    /// `None` once dropping (see `Drop`).
    readers: Option<Pool>,
    stats: Arc<CommitStats>,
    /// What new connections are made with (replaced by `reload_tls`).
    tls: Connector,
    writes: Mutex<Option<SyncSender<Op>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for PgEncounters {
    /// Where the database is, and what the writer has done: the pool's
    /// TLS connector has nothing to show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEncounters")
            .field("at", &self.at)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl PgEncounters {
    /// [`PgEncounters::open_tls`] with no TLS files: plain-text
    /// connections (a URL asking for `sslmode=require` is refused).
    pub fn open(url: &str) -> Result<Arc<PgEncounters>, EncounterError> {
        PgEncounters::open_tls(url, &StoreTls::default())
    }

    /// Connects to the database at `url` (`postgres://user@host:port/db`,
    /// or key=value form), secured as `tls` says ([`crate::tls`]), brings
    /// its schema up to date, and starts this node's writer. Fails, naming
    /// the database, when it cannot be reached, refuses the TLS files (or
    /// they are unusable), or was written by a newer build.
    pub fn open_tls(url: &str, tls: &StoreTls) -> Result<Arc<PgEncounters>, EncounterError> {
        let mut config = postgres::Config::from_str(url).map_err(|e| EncounterError::Remote {
            location: "(unparsed URL)".into(),
            // The parser's causes name the option, never its value.
            reason: format!("not a PostgreSQL connection string: {}", with_causes(&e)),
            transient: false,
        })?;
        bound_connections(&mut config);
        config.application_name("facegate");
        let at = Location::of(&config);
        let refused = |e: StoreTlsError| EncounterError::Remote {
            location: at.to_string(),
            reason: e.to_string(),
            transient: false,
        };
        let connector = Connector::open(tls, &mut config).map_err(refused)?;
        let mut first = config.connect(connector.current()).map_err(remote(&at))?;
        crate::schema::migrate(&mut first, &at)?;
        drop(first);
        let readers = r2d2::Pool::builder()
            .max_size(READERS)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(5))
            .build_unchecked(Manager {
                config: config.clone(),
                tls: connector.clone(),
            });
        let (tx, rx) = sync_channel(QUEUE);
        let stats = Arc::new(CommitStats::default());
        let (writer_stats, writer_at) = (Arc::clone(&stats), at.clone());
        let writer = std::thread::Builder::new()
            .name("pg-encounter-writer".into())
            .spawn({
                let connector = connector.clone();
                move || writer::write_loop(config, connector, writer_at, rx, &writer_stats)
            })
            .map_err(|e| EncounterError::Remote {
                location: at.to_string(),
                reason: format!("starting the writer thread: {e}"),
                transient: false,
            })?;
        Ok(Arc::new(PgEncounters {
            at,
            readers: Some(readers),
            stats,
            tls: connector,
            writes: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// Where the database is (for logs: no password).
    pub fn location(&self) -> &Location {
        &self.at
    }

    /// Reads the TLS files again (a rotated CA bundle or client
    /// certificate): the writer's and the pool's connections made from
    /// now on use them, while those open stay as they are (each was
    /// verified when made). A file that cannot be used is refused, naming
    /// it, and the files in force stay.
    pub fn reload_tls(&self) -> Result<(), StoreTlsError> {
        self.tls.reload()
    }

    /// This node's client certificate as in force (from start-up or the
    /// last reload), if it has one: what its expiry metric reads.
    pub fn client_certificate(&self) -> Option<rustls::pki_types::CertificateDer<'static>> {
        self.tls.client_certificate()
    }

    /// Stops the writer after the writes already sent, and waits for it.
    pub fn close(&self) {
        self.writes.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // A panic in the writer has already answered nobody; nothing to add.
            let _ = w.join();
        }
    }

    fn sender(&self) -> Option<SyncSender<Op>> {
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sends a write to the writer and waits for its answer.
    fn write<T>(
        &self,
        op: impl FnOnce(SyncSender<Result<T, EncounterError>>) -> Op,
    ) -> Result<T, EncounterError> {
        let (answer, result) = sync_channel(1);
        let sender = self.sender().ok_or(EncounterError::Closed)?;
        sender
            .send(op(answer))
            .map_err(|_| EncounterError::Closed)?;
        result.recv().map_err(|_| EncounterError::Closed)?
    }

    /// A pooled connection.
    fn connection(&self) -> Result<Pooled, EncounterError> {
        let readers = self.readers.as_ref().ok_or(EncounterError::Closed)?;
        readers.get().map_err(pool(&self.at))
    }

    /// Runs `read` on a pooled connection.
    fn read<T>(
        &self,
        read: impl FnOnce(&mut postgres::Client, &Location) -> Result<T, EncounterError>,
    ) -> Result<T, EncounterError> {
        let mut conn = self.connection()?;
        read(&mut conn, &self.at)
    }
}

impl Drop for PgEncounters {
    /// Stops the writer, then closes the pooled connections on a thread of
    /// their own: closing a blocking client runs a runtime of its own,
    /// which may not start on a thread that drives an async one (where a
    /// server's last reference to the store may well be dropped).
    fn drop(&mut self) {
        self.close();
        if let Some(readers) = self.readers.take() {
            let closing = std::thread::Builder::new()
                .name("pg-pool-close".into())
                .spawn(move || drop(readers));
            // If no thread can be started, the connections closed here.
            if let Ok(t) = closing {
                let _ = t.join();
            }
        }
    }
}

/// The purge's lock, held on its own pooled connection; released when
/// dropped (and by the server if this node dies).
struct PurgeLock(Pooled);

impl Drop for PurgeLock {
    fn drop(&mut self) {
        // A connection that failed is closed by the pool, which frees the lock.
        let _ = self
            .0
            .execute("SELECT pg_advisory_unlock($1)", &[&PURGE_LOCK]);
    }
}

impl EncounterStore for PgEncounters {
    fn record(&self, encounter: Encounter) -> Result<Recorded, EncounterError> {
        encounter.validate()?;
        self.write(|answer| {
            Op::Record(
                encounter,
                Box::new(move |r| {
                    // A caller that gave up (its request was cancelled) is not waiting.
                    let _ = answer.send(r);
                }),
            )
        })
    }

    fn enqueue_record(
        &self,
        encounter: Encounter,
        reply: RecordReply,
    ) -> Result<(), Box<Encounter>> {
        if let Err(e) = encounter.validate() {
            reply(Err(e.into()));
            return Ok(());
        }
        let Some(sender) = self.sender() else {
            reply(Err(EncounterError::Closed));
            return Ok(());
        };
        if let Err(refused) = sender.try_send(Op::Record(encounter, reply)) {
            // The op handed back is the one sent: a record.
            facegate_core::encounter::answer_unqueued(refused, QUEUE, |op| match op {
                Op::Record(_, reply) => Some(reply),
                _ => None,
            });
        }
        Ok(())
    }

    fn correct(&self, correction: Correction) -> Result<StoredEncounter, EncounterError> {
        correction.validate()?;
        self.write(|answer| Op::Correct(correction, answer))
    }

    fn put_traveller(&self, traveller: &Traveller, at: UnixMillis) -> Result<(), EncounterError> {
        traveller.validate()?;
        let t = traveller.clone();
        self.write(|answer| Op::PutTraveller(t, at, answer))
    }

    fn get(&self, record_id: u64) -> Result<Option<StoredEncounter>, EncounterError> {
        let Ok(key) = i64::try_from(record_id) else {
            return Ok(None);
        };
        self.read(|c, at| crate::rows::by_key(c, at, key))
    }

    fn history(&self, subject_id: &str) -> Result<Vec<StoredEncounter>, EncounterError> {
        self.read(|c, at| reads::history(c, at, subject_id))
    }

    fn movements(
        &self,
        subject_id: &str,
        until: UnixMillis,
    ) -> Result<Vec<Movement>, EncounterError> {
        self.read(|c, at| reads::movements(c, at, subject_id, until))
    }

    fn traveller(&self, subject_id: &str) -> Result<Option<Traveller>, EncounterError> {
        self.read(|c, at| reads::traveller(c, at, subject_id))
    }

    fn present_subjects(
        &self,
        until: UnixMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SubjectPage, EncounterError> {
        self.read(|c, at| reads::present_subjects(c, at, until, after, limit))
    }

    fn exits_without_entry(
        &self,
        from: UnixMillis,
        until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<StoredEncounter>, EncounterError> {
        self.read(|c, at| reads::irregular(c, at, reads::EXITS_WITHOUT_ENTRY, from, until, limit))
    }

    fn entries_without_exit(
        &self,
        from: UnixMillis,
        until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<StoredEncounter>, EncounterError> {
        self.read(|c, at| reads::irregular(c, at, reads::ENTRIES_WITHOUT_EXIT, from, until, limit))
    }

    fn manifest_encounters(
        &self,
        manifest_id: &str,
    ) -> Result<Vec<StoredEncounter>, EncounterError> {
        self.read(|c, at| reads::manifest_encounters(c, at, manifest_id))
    }

    fn erase(&self, erasure: Erasure) -> Result<u64, EncounterError> {
        self.write(|answer| Op::Erase(erasure, answer))
    }

    fn subjects_before(
        &self,
        before: UnixMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SubjectPage, EncounterError> {
        self.read(|c, at| reads::subjects_before(c, at, before, after, limit))
    }

    fn travellers_set_before(
        &self,
        category: Category,
        updated_before: UnixMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SubjectPage, EncounterError> {
        self.read(|c, at| {
            reads::travellers_set_before(c, at, category, updated_before, after, limit)
        })
    }

    fn oldest(&self) -> Result<Oldest, EncounterError> {
        self.read(reads::oldest)
    }

    /// PostgreSQL keeps no separate WAL file to truncate; erased rows'
    /// space is reclaimed by VACUUM, run here on the encounter tables (the
    /// bytes themselves stay in free space until overwritten:
    /// docs/privacy.md).
    fn checkpoint(&self) -> Result<(), EncounterError> {
        self.read(|c, at| {
            c.batch_execute("VACUUM encounter_changes, encounters, admissions, travellers")
                .map_err(remote(at))
        })
    }

    fn commit_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.stats.writes.load(Relaxed),
            self.stats.commits.load(Relaxed),
        )
    }

    /// The purge lock of every node sharing the database: a session-level
    /// advisory lock on a connection of its own, held while the lead lives.
    fn lead_purge(&self) -> Result<Option<PurgeLead>, EncounterError> {
        let mut conn = self.connection()?;
        let got: bool = conn
            .query_one("SELECT pg_try_advisory_lock($1)", &[&PURGE_LOCK])
            .map_err(remote(&self.at))?
            .get(0);
        Ok(got.then(|| PurgeLead(Box::new(PurgeLock(conn)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(url: &str) -> postgres::Config {
        let mut config = postgres::Config::from_str(url).unwrap();
        bound_connections(&mut config);
        config
    }

    #[test]
    fn connections_are_bounded_unless_the_url_says_otherwise() {
        let plain = bounded("postgres://f@db:5432/crossings");
        assert_eq!(plain.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(plain.get_tcp_user_timeout(), Some(&USER_TIMEOUT));
        assert_eq!(plain.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(
            plain.get_keepalives_interval(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            plain.get_keepalives_retries(),
            None,
            "moot under TCP_USER_TIMEOUT"
        );
        assert!(plain.get_keepalives());

        let own = bounded(
            "postgres://f@db:5432/crossings?tcp_user_timeout=60&keepalives_idle=300\
             &keepalives_interval=20&keepalives_retries=9",
        );
        assert_eq!(own.get_tcp_user_timeout(), Some(&Duration::from_secs(60)));
        assert_eq!(own.get_keepalives_idle(), Duration::from_secs(300));
        assert_eq!(own.get_keepalives_interval(), Some(Duration::from_secs(20)));
        assert_eq!(own.get_keepalives_retries(), Some(9));
    }
}
