//! Checkpoints off the commit path. SQLite's automatic checkpoint runs
//! inside the commit that fills the WAL to 1,000 pages: that commit copies
//! about 4 MiB into the database file and fsyncs it, and every record
//! queued behind it waits (measured: the wait for a record past 8 ms at
//! p99 at 1,000 requests/s, 0.3 ms without it). The writer's connection
//! therefore has it off (`wal_autocheckpoint=0`), and this thread, with a
//! connection of its own, runs a PASSIVE checkpoint whenever the writer
//! has committed since the last one. A PASSIVE checkpoint never blocks the
//! writer: WAL mode lets commits append while frames already written are
//! copied back, and the writer restarts the WAL from its start once every
//! frame has been copied, so the file stays a few MiB and its size, hence
//! its inode, rarely changes.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::sqlite::{DbError, db_error};

/// How often the checkpointer looks for new commits: at 2,000 records/s a
/// record dirties about 5 pages, so the WAL holds at most about 2,000
/// pages (8 MiB) between two checkpoints.
const EVERY: Duration = Duration::from_millis(200);

/// The checkpoint thread of one store, stopped (after a last checkpoint)
/// when dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    stop: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` (already open, its
    /// schema current) whenever `commits` (the writer's count of commits
    /// so far) has moved since the last time.
    pub(super) fn start(
        path: &Path,
        commits: impl Fn() -> u64 + Send + 'static,
    ) -> Result<Checkpointer, DbError> {
        let conn = open(path)?;
        let (stop, stopped) = channel();
        let own_path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("encounter-checkpoint".into())
            .spawn(move || run(&conn, &own_path, &commits, &stopped))
            .map_err(|error| DbError::Io {
                path: path.to_path_buf(),
                error,
            })?;
        Ok(Checkpointer {
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread after a last checkpoint, and waits for it.
    pub(super) fn stop(&self) {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // A panic in the checkpointer loses nothing: the WAL holds every commit.
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The checkpointer's own read-write connection; a checkpoint fsyncs the
/// WAL before copying it and the database after (`synchronous=FULL`).
fn open(path: &Path) -> Result<Connection, DbError> {
    let e = |e| db_error(path, e);
    let c = Connection::open(path).map_err(e)?;
    c.busy_timeout(Duration::from_secs(5)).map_err(e)?;
    c.pragma_update(None, "synchronous", "FULL").map_err(e)?;
    Ok(c)
}

fn run(conn: &Connection, path: &Path, commits: &dyn Fn() -> u64, stopped: &Receiver<()>) {
    let mut seen = 0;
    loop {
        // Nothing is ever sent: the sender's drop is the stop.
        let last = !matches!(stopped.recv_timeout(EVERY), Err(RecvTimeoutError::Timeout));
        let now = commits();
        if now != seen {
            seen = now;
            if let Err(e) = passive(conn, path) {
                // The next commit's WAL only grows; the next pass retries.
                tracing::warn!(error = %e, "encounter store checkpoint failed");
            }
        }
        if last {
            return;
        }
    }
}

/// Copies what it can of the WAL into the database without waiting for
/// the writer or readers.
fn passive(conn: &Connection, path: &Path) -> Result<(), DbError> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(|e| db_error(path, e))
}
