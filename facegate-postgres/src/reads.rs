//! The reads reconciliation and retention need, as PostgreSQL runs them:
//! the same questions as the embedded store's
//! (`facegate_core::encounter::sqlite_store`), over the same indexes.

use postgres::Client;

use crate::error::{Location, remote};
use crate::rows::{self, COLUMNS};
use facegate_core::clock::UnixMillis;
use facegate_core::encounter::store::page_limit;
use facegate_core::encounter::{
    Category, EncounterError, Movement, Oldest, StoredEncounter, SubjectPage, Traveller,
};

/// The subject ids `sql` returns (its first column).
fn subject_page(
    c: &mut Client,
    at: &Location,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    limit: i64,
) -> Result<SubjectPage, EncounterError> {
    let ids = c
        .query(sql, params)
        .map_err(remote(at))?
        .iter()
        .map(|r| r.try_get(0).map_err(remote(at)))
        .collect::<Result<Vec<String>, _>>()?;
    Ok(SubjectPage::from_fetch(ids, limit))
}

/// A subject's records in capture order (entry before exit at one instant).
pub fn history(
    c: &mut Client,
    at: &Location,
    subject: &str,
) -> Result<Vec<StoredEncounter>, EncounterError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM encounters WHERE subject_id = $1 \
         ORDER BY captured_ms, direction, key"
    );
    rows::records(c, at, &sql, &[&subject])
}

/// A subject's movements before `until`, in the order stay rules take them.
pub fn movements(
    c: &mut Client,
    at: &Location,
    subject: &str,
    until: UnixMillis,
) -> Result<Vec<Movement>, EncounterError> {
    c.query(
        "SELECT captured_ms, direction FROM encounters WHERE subject_id = $1 \
         AND captured_ms < $2 ORDER BY captured_ms, direction, key",
        &[&subject, &until.0],
    )
    .map_err(remote(at))?
    .iter()
    .map(|r| {
        Ok(Movement {
            captured_at: UnixMillis(r.try_get(0).map_err(remote(at))?),
            direction: rows::direction(r.try_get(1).map_err(remote(at))?, at)?,
        })
    })
    .collect()
}

/// A traveller's file with their admissions, oldest first.
pub fn traveller(
    c: &mut Client,
    at: &Location,
    subject: &str,
) -> Result<Option<Traveller>, EncounterError> {
    let Some(row) = c
        .query_opt(
            "SELECT category FROM travellers WHERE subject_id = $1",
            &[&subject],
        )
        .map_err(remote(at))?
    else {
        return Ok(None);
    };
    let category = rows::category(row.try_get(0).map_err(remote(at))?, at)?;
    let admissions = c
        .query(
            "SELECT day, class, port, rule, until_day FROM admissions WHERE subject_id = $1 \
             ORDER BY day",
            &[&subject],
        )
        .map_err(remote(at))?
        .iter()
        .map(|r| rows::admission(r, at))
        .collect::<Result<_, _>>()?;
    Ok(Some(Traveller {
        subject_id: subject.to_string(),
        category,
        admissions,
    }))
}

/// Subjects whose last movement before `until` is an entry, after `after`,
/// not of a category without a stay limit: the embedded store's query, the
/// last movement found as the maximum of `captured_ms * 2 + is_exit`.
pub fn present_subjects(
    c: &mut Client,
    at: &Location,
    until: UnixMillis,
    after: Option<&str>,
    limit: usize,
) -> Result<SubjectPage, EncounterError> {
    let limit = page_limit(limit);
    subject_page(
        c,
        at,
        "SELECT subject_id FROM encounters
         WHERE subject_id IS NOT NULL AND subject_id > $1 AND captured_ms < $2
         GROUP BY subject_id
         HAVING MAX(captured_ms * 2 + (direction = 'exit')::int) % 2 = 0 AND NOT EXISTS (
             SELECT 1 FROM travellers t WHERE t.subject_id = encounters.subject_id
             AND t.category IN ('citizen', 'lawful_permanent_resident'))
         ORDER BY subject_id LIMIT $3",
        &[&after.unwrap_or(""), &until.0, &(limit + 1)],
        limit,
    )
}

/// Exits in `[$1, $2)` whose subject's previous movement is not an entry,
/// or who has none.
pub const EXITS_WITHOUT_ENTRY: &str = "e.direction = 'exit' AND e.captured_ms >= $1
       AND e.captured_ms < $2 AND e.subject_id IS NOT NULL
       AND COALESCE((SELECT p.direction FROM encounters p
                     WHERE p.subject_id = e.subject_id
                       AND (p.captured_ms, p.direction, p.key) < (e.captured_ms, e.direction, e.key)
                     ORDER BY p.captured_ms DESC, p.direction DESC, p.key DESC LIMIT 1),
                    'exit') = 'exit'";

/// Entries in `[$1, $2)` whose subject's next movement is another entry.
pub const ENTRIES_WITHOUT_EXIT: &str = "e.direction = 'entry' AND e.captured_ms >= $1
       AND e.captured_ms < $2 AND e.subject_id IS NOT NULL
       AND (SELECT n.direction FROM encounters n
            WHERE n.subject_id = e.subject_id
              AND (n.captured_ms, n.direction, n.key) > (e.captured_ms, e.direction, e.key)
            ORDER BY n.captured_ms, n.direction, n.key LIMIT 1) = 'entry'";

/// The records `condition` (over `encounters e`) selects in `[from,
/// until)`, in capture order, a page at a time.
pub fn irregular(
    c: &mut Client,
    at: &Location,
    condition: &str,
    from: UnixMillis,
    until: UnixMillis,
    limit: usize,
) -> Result<Vec<StoredEncounter>, EncounterError> {
    let columns = COLUMNS.replace(", ", ", e.");
    let sql = format!(
        "SELECT e.{columns} FROM encounters e WHERE {condition} \
         ORDER BY e.captured_ms, e.direction, e.key LIMIT $3"
    );
    rows::records(c, at, &sql, &[&from.0, &until.0, &page_limit(limit)])
}

/// The encounters recorded against a manifest, in capture order.
pub fn manifest_encounters(
    c: &mut Client,
    at: &Location,
    manifest_id: &str,
) -> Result<Vec<StoredEncounter>, EncounterError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM encounters WHERE manifest_id = $1 \
         ORDER BY captured_ms, direction, key"
    );
    rows::records(c, at, &sql, &[&manifest_id])
}

/// Subjects after `after` named by an encounter captured before `before`,
/// or with a traveller file.
pub fn subjects_before(
    c: &mut Client,
    at: &Location,
    before: UnixMillis,
    after: Option<&str>,
    limit: usize,
) -> Result<SubjectPage, EncounterError> {
    let limit = page_limit(limit);
    subject_page(
        c,
        at,
        "SELECT subject_id FROM (
             SELECT DISTINCT subject_id FROM encounters
             WHERE subject_id IS NOT NULL AND subject_id > $1 AND captured_ms < $2
             UNION
             SELECT subject_id FROM travellers WHERE subject_id > $1
         ) s ORDER BY subject_id LIMIT $3",
        &[&after.unwrap_or(""), &before.0, &(limit + 1)],
        limit,
    )
}

/// Subjects whose file says `category` and was last set before
/// `updated_before`.
pub fn travellers_set_before(
    c: &mut Client,
    at: &Location,
    category: Category,
    updated_before: UnixMillis,
    after: Option<&str>,
    limit: usize,
) -> Result<SubjectPage, EncounterError> {
    let limit = page_limit(limit);
    subject_page(
        c,
        at,
        "SELECT subject_id FROM travellers WHERE subject_id > $1 AND category = $2 \
         AND updated_ms < $3 ORDER BY subject_id LIMIT $4",
        &[
            &after.unwrap_or(""),
            &category.name(),
            &updated_before.0,
            &(limit + 1),
        ],
        limit,
    )
}

/// The oldest encounter record time per category, and of encounters
/// naming nobody.
pub fn oldest(c: &mut Client, at: &Location) -> Result<Oldest, EncounterError> {
    let rows = c
        .query(
            "SELECT t.category, MIN(e.recorded_ms) FROM encounters e \
             LEFT JOIN travellers t ON t.subject_id = e.subject_id \
             WHERE e.subject_id IS NOT NULL GROUP BY t.category ORDER BY t.category NULLS FIRST",
            &[],
        )
        .map_err(remote(at))?;
    let mut by_category = Vec::with_capacity(rows.len());
    for r in &rows {
        let name: Option<&str> = r.try_get(0).map_err(remote(at))?;
        let category = name.map(|n| rows::category(n, at)).transpose()?;
        by_category.push((category, UnixMillis(r.try_get(1).map_err(remote(at))?)));
    }
    let unnamed: Option<i64> = c
        .query_one(
            "SELECT MIN(recorded_ms) FROM encounters WHERE subject_id IS NULL",
            &[],
        )
        .map_err(remote(at))?
        .try_get(0)
        .map_err(remote(at))?;
    Ok(Oldest {
        by_category,
        unnamed: unnamed.map(UnixMillis),
    })
}
