//! The writer thread: group commit on one connection. Whatever writes are
//! waiting (up to [`MAX_GROUP`]) go into one transaction, and each caller
//! is answered only once its commit has returned (`synchronous_commit` on:
//! flushed to the server's WAL). Runs of records are written together, a
//! few statements for the whole run (`records`); every other write runs in
//! a savepoint of its own, so one that fails takes nothing else with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;

use postgres::{Client, Transaction};

use crate::connector::Connector;
use crate::error::{Location, remote};
use crate::group::{Answer, Pending, copy, hold, in_savepoint};
use crate::{erase, records};
use facegate_core::clock::UnixMillis;
use facegate_core::encounter::{
    Correction, Encounter, EncounterError, Erasure, RecordReply, StoredEncounter, Traveller,
};

/// Most writes one group commit takes.
pub const MAX_GROUP: usize = 256;

/// A write, with where to send its answer.
pub enum Op {
    /// A port's record.
    Record(Encounter, RecordReply),
    /// An officer's decision or a correction.
    Correct(Correction, Answer<StoredEncounter>),
    /// A traveller's file.
    PutTraveller(Traveller, UnixMillis, Answer<()>),
    /// An erasure (the retention purge's, or on request).
    Erase(Erasure, Answer<u64>),
}

/// Counts of the writer's work, for metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Writes answered.
    pub writes: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
}

/// The writer: connects (again, after a failure) when a group arrives,
/// through `tls` as it is then, until every sender is gone.
pub(crate) fn write_loop(
    config: postgres::Config,
    tls: Connector,
    at: Location,
    ops: Receiver<Op>,
    stats: &CommitStats,
) {
    let mut client: Option<Client> = None;
    while let Ok(first) = ops.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match ops.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match config.connect(tls.current()) {
                Ok(c) => Some(c),
                Err(e) => {
                    fail_all(group, &remote(&at)(e));
                    continue;
                }
            };
        }
        if let Some(c) = client.as_mut() {
            commit_group(c, &at, group, stats);
        }
    }
}

/// Applies `group` in one transaction and answers each write once the
/// commit has returned, or with its failure.
fn commit_group(client: &mut Client, at: &Location, group: Vec<Op>, stats: &CommitStats) {
    let mut tx = match client.transaction() {
        Ok(tx) => tx,
        Err(e) => return fail_all(group, &remote(at)(e)),
    };
    let mut pending: Vec<Pending> = Vec::with_capacity(group.len());
    let mut run: Vec<(Encounter, RecordReply)> = Vec::new();
    for op in group {
        if let Op::Record(e, reply) = op {
            run.push((e, reply));
            continue;
        }
        pending.extend(records::write_run(&mut tx, at, std::mem::take(&mut run)));
        pending.extend(apply(&mut tx, at, op));
    }
    pending.extend(records::write_run(&mut tx, at, run));
    let committed = tx.commit().map_err(remote(at));
    if committed.is_ok() {
        stats
            .writes
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        stats.commits.fetch_add(1, Ordering::Relaxed);
    }
    let failed = committed.err();
    for p in pending {
        p(failed.as_ref());
    }
}

/// Applies one write other than a record (those go in runs), in its own
/// savepoint.
fn apply(tx: &mut Transaction<'_>, at: &Location, op: Op) -> Option<Pending> {
    Some(match op {
        Op::Record(..) => return None,
        Op::Correct(c, answer) => hold(answer, in_savepoint(tx, at, |t| correct(t, at, &c))),
        Op::PutTraveller(t, when, answer) => hold(
            answer,
            in_savepoint(tx, at, |s| put_traveller(s, at, &t, when)),
        ),
        Op::Erase(e, answer) => hold(answer, in_savepoint(tx, at, |s| erase::erase(s, at, &e))),
    })
}

/// Answers every write of a group that could not start: nothing of it was
/// written.
fn fail_all(group: Vec<Op>, e: &EncounterError) {
    let again = |e: &EncounterError| copy(e, "nothing was written");
    for op in group {
        let _ = match op {
            Op::Record(_, reply) => {
                reply(Err(again(e)));
                true
            }
            Op::Correct(_, a) => a.send(Err(again(e))).is_ok(),
            Op::PutTraveller(_, _, a) => a.send(Err(again(e))).is_ok(),
            Op::Erase(_, a) => a.send(Err(again(e))).is_ok(),
        };
    }
}

fn correct(
    tx: &mut Transaction<'_>,
    at: &Location,
    c: &Correction,
) -> Result<StoredEncounter, EncounterError> {
    let not_found = || EncounterError::NotFound {
        record_id: c.record_id,
    };
    let key = i64::try_from(c.record_id).map_err(|_| not_found())?;
    let before = tx
        .query_opt(
            "SELECT decision, subject_id FROM encounters WHERE key = $1 FOR UPDATE",
            &[&key],
        )
        .map_err(remote(at))?
        .ok_or_else(not_found)?;
    let (old_decision, old_subject): (String, Option<String>) = (before.get(0), before.get(1));
    tx.execute(
        "INSERT INTO encounter_changes (encounter, changed_ms, principal, old_decision, \
         old_subject_id, new_decision, new_subject_id, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &key,
            &c.at.0,
            &c.principal,
            &old_decision,
            &old_subject,
            &c.decision.name(),
            &c.subject_id,
            &c.note,
        ],
    )
    .map_err(remote(at))?;
    tx.execute(
        "UPDATE encounters SET decision = $2, subject_id = $3 WHERE key = $1",
        &[&key, &c.decision.name(), &c.subject_id],
    )
    .map_err(remote(at))?;
    crate::rows::by_key(tx, at, key)?.ok_or_else(not_found)
}

fn put_traveller(
    tx: &mut Transaction<'_>,
    at: &Location,
    t: &Traveller,
    when: UnixMillis,
) -> Result<(), EncounterError> {
    tx.execute(
        "INSERT INTO travellers (subject_id, category, updated_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (subject_id) DO UPDATE SET category = excluded.category, \
         updated_ms = excluded.updated_ms",
        &[&t.subject_id, &t.category.name(), &when.0],
    )
    .map_err(remote(at))?;
    for a in &t.admissions {
        tx.execute(
            "INSERT INTO admissions (subject_id, day, class, port, rule, until_day) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject_id, day) DO UPDATE SET \
             class = excluded.class, port = excluded.port, rule = excluded.rule, \
             until_day = excluded.until_day",
            &[
                &t.subject_id,
                &a.day.0,
                &a.class,
                &a.port,
                &a.rule.name(),
                &a.rule.until().map(|d| d.0),
            ],
        )
        .map_err(remote(at))?;
    }
    Ok(())
}
