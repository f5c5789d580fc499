//! Checkpoints off the commit path. SQLite's automatic checkpoint runs
//! inside the commit that fills the WAL to 1,000 pages: that commit copies
//! about 4 MiB into the database file and fsyncs it, and every record
//! queued behind it waits (measured: the wait for a record past 8 ms at
//! p99 at 1,000 requests/s, 0.3 ms without it). The writer's connection
//! therefore has it off (`wal_autocheckpoint=0`), and this thread, with a
//! connection of its own, runs a PASSIVE checkpoint whenever the writer
//! has committed since the last one. A PASSIVE checkpoint never blocks the
//! writer: WAL mode lets commits append while frames already written are
//! copied back.
//!
//! **Keeping the WAL bounded.** The writer starts the WAL over from its
//! first frame only when a transaction of its begins with every frame
//! already copied. Under steady load a commit always lands while a
//! checkpoint copies, so that never happens by itself: measured at 1,000
//! records/s, the WAL grew by 22 MB/s for as long as the load lasted, and
//! each commit then also extended the file (an inode write in every
//! fdatasync). So once the WAL holds [`RESTART_FRAMES`], this thread
//! copies it again until little is left, then takes the [`CommitGate`]
//! (the writer holds it for each transaction) for one last PASSIVE pass
//! over the frames committed meanwhile: the writer waits only for that
//! short copy, and its next transaction starts the WAL over. The file
//! then stays at its largest size and keeps its inode.
//!
//! A reader that holds an old snapshot (a long report) keeps frames from
//! being copied; the WAL then grows until it ends, and is started over
//! at the next pass after.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::sqlite::{DbError, db_error};

/// How often the checkpointer looks for new commits: at 2,000 records/s a
/// record dirties about 5 pages, so the WAL holds at most about 2,000
/// pages (8 MiB) between two checkpoints.
const EVERY: Duration = Duration::from_millis(200);

/// WAL frames (pages, 4 KiB each) past which the WAL is started over:
/// 16 MiB, about 0.7 s of records at 1,000 a second (SQLite's own
/// automatic checkpoint runs at 1,000).
pub(super) const RESTART_FRAMES: u64 = 4_096;

/// Frames committed during a pass at or below which the next pass is run
/// with the writer held: about 10 commits' worth, a copy of a millisecond
/// or two.
const GATED_FRAMES: u64 = 64;

/// Ungated passes tried before the gated one, each copying what arrived
/// during the one before.
const CONVERGING_PASSES: usize = 4;

/// Held by the writer for each transaction, and by the checkpointer for
/// the last pass before the WAL is started over, so that pass copies
/// every frame and the writer's next transaction finds none left.
pub(super) type CommitGate = Arc<Mutex<()>>;

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
    /// so far) has moved since the last time, starting the WAL over once
    /// it holds `restart_frames` (see the module's doc; the writer holds
    /// `gate` for each of its transactions).
    pub(super) fn start(
        path: &Path,
        commits: impl Fn() -> u64 + Send + 'static,
        gate: CommitGate,
        restart_frames: u64,
    ) -> Result<Checkpointer, DbError> {
        let conn = open(path)?;
        let (stop, stopped) = channel();
        let wal = Wal {
            conn,
            path: path.to_path_buf(),
            gate,
            restart_frames,
        };
        let thread = std::thread::Builder::new()
            .name("encounter-checkpoint".into())
            .spawn(move || run(&wal, &commits, &stopped))
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

/// The checkpointer's connection and what it needs to start the WAL over.
struct Wal {
    conn: Connection,
    path: std::path::PathBuf,
    gate: CommitGate,
    restart_frames: u64,
}

fn run(wal: &Wal, commits: &dyn Fn() -> u64, stopped: &Receiver<()>) {
    let mut seen = 0;
    loop {
        // Nothing is ever sent: the sender's drop is the stop.
        let last = !matches!(stopped.recv_timeout(EVERY), Err(RecvTimeoutError::Timeout));
        let now = commits();
        if now != seen {
            seen = now;
            if let Err(e) = wal.checkpoint() {
                // The next commit's WAL only grows; the next pass retries.
                tracing::warn!(error = %e, "encounter store checkpoint failed");
            }
        }
        if last {
            return;
        }
    }
}

/// What one PASSIVE checkpoint saw: the WAL's frames when it began, and
/// how many of them are now in the database.
#[derive(Debug, Clone, Copy)]
struct Copied {
    frames: u64,
    copied: u64,
}

impl Copied {
    fn left(self) -> u64 {
        self.frames.saturating_sub(self.copied)
    }
}

impl Wal {
    /// One pass: copies what it can; past `restart_frames`, makes the
    /// writer's next transaction start the WAL over.
    fn checkpoint(&self) -> Result<(), DbError> {
        let mut pass = self.passive()?;
        if pass.frames < self.restart_frames {
            return Ok(());
        }
        // Each pass copies what the writer committed during the one
        // before; once that is little, so is what the gated pass copies.
        for _ in 0..CONVERGING_PASSES {
            let next = self.passive()?;
            let arrived = next.frames.saturating_sub(pass.frames);
            pass = next;
            if arrived <= GATED_FRAMES {
                break;
            }
        }
        let _writer_waits = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        let last = self.passive()?;
        tracing::debug!(
            frames = last.frames,
            left = last.left(),
            "encounter WAL copied with the writer held; its next transaction starts it over"
        );
        Ok(())
    }

    /// Copies what it can of the WAL into the database without waiting
    /// for the writer or readers.
    fn passive(&self) -> Result<Copied, DbError> {
        let (frames, copied) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })
            .map_err(|e| db_error(&self.path, e))?;
        Ok(Copied {
            frames: u64::try_from(frames).unwrap_or(0),
            copied: u64::try_from(copied).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::sqlite::{self, Ownership};

    /// The WAL header's checkpoint sequence number, which goes up each
    /// time a writer starts the WAL over.
    fn restarts(wal: &Path) -> u32 {
        use std::io::Read;
        let mut header = [0u8; 16];
        std::fs::File::open(wal)
            .unwrap()
            .read_exact(&mut header)
            .unwrap();
        u32::from_be_bytes([header[12], header[13], header[14], header[15]])
    }

    fn frames_in(wal: &Path) -> u64 {
        let len = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
        len.saturating_sub(32) / (4_096 + 24)
    }

    /// A database owned as the store owns it, its writer's automatic
    /// checkpoint off, and the checkpointer's [`Wal`] over it (bound:
    /// 256 frames).
    struct Store {
        wal: Wal,
        writer: Connection,
        wal_path: std::path::PathBuf,
        _lock: std::fs::File,
        _dir: tempfile::TempDir,
    }

    fn store() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let lock = sqlite::lock_file(&path).unwrap();
        let writer =
            sqlite::open_owned(&path, &["CREATE TABLE t (x BLOB)"], Ownership::LockFile).unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        let wal = Wal {
            conn: open(&path).unwrap(),
            path: path.clone(),
            gate: CommitGate::default(),
            restart_frames: 256,
        };
        Store {
            wal,
            writer,
            wal_path: dir.path().join("t.db-wal"),
            _lock: lock,
            _dir: dir,
        }
    }

    /// The store's writer, with no pause between its transactions, as
    /// under steady load (a commit lands during every checkpoint), holding
    /// the gate for each, until stopped.
    struct Steady {
        stop: Arc<AtomicBool>,
        thread: std::thread::JoinHandle<()>,
    }

    impl Steady {
        fn start(mut writer: Connection, gate: &CommitGate) -> Steady {
            let stop = Arc::new(AtomicBool::new(false));
            let (gate, stopped) = (Arc::clone(gate), Arc::clone(&stop));
            let thread = std::thread::spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    let _held = gate.lock().unwrap();
                    let tx = writer.transaction().unwrap();
                    tx.execute("INSERT INTO t VALUES (randomblob(3000))", [])
                        .unwrap();
                    tx.commit().unwrap();
                }
            });
            Steady { stop, thread }
        }

        fn stop(self) {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.join().unwrap();
        }
    }

    /// A [`Store`] whose writer runs as [`Steady`]; its directory and
    /// lock live as long as it does.
    struct Running {
        wal: Wal,
        wal_path: std::path::PathBuf,
        steady: Steady,
        _lock: std::fs::File,
        _dir: tempfile::TempDir,
    }

    impl Store {
        fn start_steady(self) -> Running {
            let steady = Steady::start(self.writer, &self.wal.gate);
            Running {
                wal: self.wal,
                wal_path: self.wal_path,
                steady,
                _lock: self._lock,
                _dir: self._dir,
            }
        }
    }

    fn wait_for_frames(wal_path: &Path, frames: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while frames_in(wal_path) < frames {
            assert!(Instant::now() < deadline, "the writer wrote too little");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `patience` for the WAL to be started over after `before`.
    fn restarts_after(wal_path: &Path, before: u32, patience: Duration) -> u32 {
        let deadline = Instant::now() + patience;
        while restarts(wal_path) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        restarts(wal_path)
    }

    #[test]
    fn a_wal_past_its_bound_is_started_over_while_the_writer_never_pauses() {
        let running = store().start_steady();
        let (wal, wal_path) = (&running.wal, running.wal_path.as_path());
        wait_for_frames(wal_path, 300);
        let before = restarts(wal_path);

        wal.checkpoint().unwrap();

        let after = restarts_after(wal_path, before, Duration::from_secs(10));
        running.steady.stop();
        assert_eq!(
            after,
            before + 1,
            "the writer's next transaction did not start the WAL over"
        );
    }

    #[test]
    fn a_reader_holding_an_old_snapshot_delays_the_restart_without_stalling_anyone() {
        let running = store().start_steady();
        let (wal, wal_path) = (&running.wal, running.wal_path.as_path());
        wait_for_frames(wal_path, 50);
        // A long report: a read transaction on the WAL as it is now.
        let report = sqlite::open_reader(&wal.path).unwrap();
        report.execute_batch("BEGIN").unwrap();
        let _: i64 = report
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        wait_for_frames(wal_path, 300);
        let before = restarts(wal_path);

        let started = Instant::now();
        wal.checkpoint().unwrap();
        let took = started.elapsed();
        // The writer commits every few milliseconds: had the pass let it
        // start the WAL over, it would have by now.
        let held_back = restarts_after(wal_path, before, Duration::from_millis(300));

        report.execute_batch("COMMIT").unwrap();
        wal.checkpoint().unwrap();
        let after_report = restarts_after(wal_path, before, Duration::from_secs(10));
        running.steady.stop();
        assert!(took < Duration::from_secs(5), "the pass waited {took:?}");
        assert_eq!(held_back, before, "the WAL was started over under a reader");
        assert_eq!(
            after_report,
            before + 1,
            "the WAL was not started over once the report ended"
        );
    }

    #[test]
    fn a_wal_under_its_bound_is_only_copied() {
        let Store {
            wal,
            writer,
            _lock,
            _dir,
            ..
        } = store();
        for _ in 0..10 {
            writer
                .execute("INSERT INTO t VALUES (randomblob(3000))", [])
                .unwrap();
        }
        // The gate is held, as by a writer mid-transaction: a pass that
        // waited for it would never return.
        let _writer_mid_transaction = wal.gate.lock().unwrap();
        wal.checkpoint().unwrap();
        let copied = wal.passive().unwrap();
        assert!(copied.frames >= 10 && copied.left() == 0, "{copied:?}");
    }
}
