//! Synthetic travel histories: a population of travellers crossing the
//! border over a span of years, written through the real store, for the
//! reports' tests and the 10-million-record benchmark (issue 16).
//!
//! **What is drawn.** Each traveller has a category (mostly visa-exempt
//! and non-immigrant visa holders, some permanent residents, a few
//! citizens and crew), a kind of travel that goes with it (a tourist on a
//! B2 visa admitted for six months, a worker admitted for three years, a
//! student for the duration of status, a visa-exempt visitor under
//! 90-in-180, a crew member for 29 days, a resident's trips abroad), a home
//! port and carrier, and a rate of trips. Trips follow one another over the
//! span: entry, a stay of a length typical of the kind, exit, a gap. Every
//! visitor's stay is an admission on its entry day with the kind's rule,
//! and every stay is cut to end within that rule, so a traveller with
//! nothing injected is never an overstayer. Residents' records begin with
//! the return from a trip abroad that began before the span (the system's
//! records start with its first capture), then trips abroad: exit, return.
//!
//! **The messy reality** is injected, at most one thing per traveller, and
//! said in [`History::injected`], so a test can check that the reports
//! find exactly it:
//! * an overstay ([`SynthConfig::overstay`], of visitors with a dated
//!   rule): one stay runs past its last allowed day and ends late, or never
//!   ends (still in the country at the end of the span);
//! * a missed exit capture ([`SynthConfig::missed_exit`]): one exit is not
//!   recorded, or is recorded as a no-match naming nobody; on a visitor's
//!   only trip it leaves an open stay, which becomes an apparent overstay,
//!   as a missed exit does in the deployed system;
//! * an exit without entry ([`SynthConfig::exit_without_entry`]): the
//!   entry (or a resident's return) before one exit is not recorded.
//!
//! **Captures** carry a port (18 air, land and sea ports, weighted), a lane,
//! a carrier and voyage, a method (manifest searches at gates, kiosks'
//! 1:N, document 1:1), a decision (a match above the port's threshold, or
//! an officer's decision after a manual check for 3 %), a score, the
//! gallery generation of the month, and a recording delay (late uploads
//! for 0.5 %, so recording order is not capture order).
//!
//! **Deterministic**: traveller `i` is drawn from its own random stream of
//! the seed, so any traveller can be regenerated alone (a benchmark picks
//! random subjects and knows their histories) and the same seed gives the
//! same records.

mod records;
mod trips;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::day::Day;
use super::model::{Encounter, Traveller};

pub use load::{BATCH, LoadReport, load};

mod load;

/// Shares of the traveller categories; they must sum to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    /// Citizens (recorded at exit and entry like anyone, no stay limit).
    pub citizen: f64,
    /// Lawful permanent residents.
    pub permanent_resident: f64,
    /// Non-immigrant visa holders (tourists, business, workers, students).
    pub visa_holder: f64,
    /// Visa-exempt visitors (90 days in any 180).
    pub visa_exempt: f64,
    /// Others: crew members admitted for 29 days.
    pub other: f64,
}

impl Default for Shares {
    /// A mix like a large air port's non-citizen arrivals, with a few
    /// citizens and residents.
    fn default() -> Shares {
        Shares {
            citizen: 0.02,
            permanent_resident: 0.10,
            visa_holder: 0.28,
            visa_exempt: 0.58,
            other: 0.02,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Travellers; each crosses at least once.
    pub travellers: usize,
    /// The first day of the span.
    pub start: Day,
    /// Length of the span, in years of 365 days.
    pub years: u32,
    /// The seed: the same seed and configuration give the same records.
    pub seed: u64,
    /// Category mix.
    pub shares: Shares,
    /// Share of visitors with a dated rule (not duration of status) who
    /// overstay one stay.
    pub overstay: f64,
    /// Of overstayers, the share still in the country at the end of the
    /// span; the rest left late.
    pub still_here: f64,
    /// Share of travellers one of whose exits was not captured.
    pub missed_exit: f64,
    /// Share of travellers one of whose exits has no entry captured before it.
    pub exit_without_entry: f64,
}

impl Default for SynthConfig {
    /// 10,000 travellers over 3 years from 2023-01-01; 2 % overstays, half
    /// of them still in the country; 1 % missed exits; 0.5 % exits without
    /// entry.
    fn default() -> SynthConfig {
        SynthConfig {
            travellers: 10_000,
            start: Day(19_358), // 2023-01-01
            years: 3,
            seed: 1,
            shares: Shares::default(),
            overstay: 0.02,
            still_here: 0.5,
            missed_exit: 0.01,
            exit_without_entry: 0.005,
        }
    }
}

/// What was done to a traveller's records beyond ordinary travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Nothing: every stay within its rule, every crossing captured.
    Nothing,
    /// One stay ran past `last_allowed`: it ended on `left`, or (`None`)
    /// it has not ended by the end of the span.
    Overstay {
        /// The stay's last allowed day under its rule.
        last_allowed: Day,
        /// The exit day, when the traveller left (late).
        left: Option<Day>,
    },
    /// The exit on `exit_day` was not captured.
    MissedExit {
        /// The day of the exit that was missed.
        exit_day: Day,
        /// Whether the exit was recorded as a no-match naming nobody
        /// (otherwise nothing was recorded).
        recorded_unmatched: bool,
        /// Whether no crossing of the traveller followed it: they then
        /// look still in the country (a visitor, as an open stay).
        last: bool,
    },
    /// The entry before the exit on `exit_day` was not captured.
    ExitWithoutEntry {
        /// The exit's day.
        exit_day: Day,
    },
}

/// One traveller's file and records.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// Category and admissions (one per visitor's stay).
    pub traveller: Traveller,
    /// Their captures, in capture order.
    pub encounters: Vec<Encounter>,
    /// What was injected.
    pub injected: Injected,
}

/// A configuration that cannot be generated.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SynthError {
    /// Shares or sizes out of range.
    #[error("synthetic encounters: {0}")]
    BadConfig(String),
}

/// The generator: checked configuration, and the span's last day.
#[derive(Debug, Clone)]
pub struct EncounterSynth {
    cfg: SynthConfig,
    end: Day,
}

impl EncounterSynth {
    /// Checks `cfg`: shares each in 0..=1, category shares summing to 1,
    /// at least one traveller and one year, a span within 1970..9999.
    pub fn new(cfg: SynthConfig) -> Result<EncounterSynth, SynthError> {
        let s = cfg.shares;
        let shares = [
            s.citizen,
            s.permanent_resident,
            s.visa_holder,
            s.visa_exempt,
        ];
        let all = shares.into_iter().chain([
            s.other,
            cfg.overstay,
            cfg.still_here,
            cfg.missed_exit,
            cfg.exit_without_entry,
        ]);
        let bad = |why: &str| Err(SynthError::BadConfig(why.to_string()));
        if all.clone().any(|x| !(0.0..=1.0).contains(&x)) {
            return bad("every share must be within 0..=1");
        }
        if ((shares.iter().sum::<f64>() + s.other) - 1.0).abs() > 1e-9 {
            return bad("category shares must sum to 1");
        }
        if cfg.overstay + cfg.missed_exit + cfg.exit_without_entry > 1.0 {
            return bad("overstay, missed exit and exit without entry shares sum past 1");
        }
        if cfg.travellers == 0 || cfg.years == 0 || cfg.years > 100 {
            return bad("give at least one traveller and 1 to 100 years");
        }
        if cfg.start < Day(0) || cfg.start.plus(365 * cfg.years as i32) > Day(2_900_000) {
            return bad("the span must lie between 1970 and 9900");
        }
        let end = cfg.start.plus(365 * cfg.years as i32 - 1);
        Ok(EncounterSynth { cfg, end })
    }

    /// The configuration.
    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    /// The last day of the span: the natural as-of day of a report.
    pub fn end(&self) -> Day {
        self.end
    }

    /// Traveller `i`'s subject id, in the synthetic gallery's id format
    /// (`S000000123`), so a demo can tie records to enrolled subjects.
    pub fn subject_id(i: usize) -> String {
        crate::synth::Synth::subject_id(i)
    }

    /// Traveller `i`'s history (any `i`; travellers `0..travellers` make
    /// the population), drawn from its own random stream.
    pub fn history(&self, i: usize) -> History {
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed);
        rng.set_stream(i as u64);
        let profile = trips::Profile::draw(&mut rng, &self.cfg.shares);
        let mut plan = trips::plan(&mut rng, &profile, self.cfg.start, self.end);
        let injected = trips::inject(&mut rng, &mut plan, &profile, &self.cfg, self.end);
        let subject_id = Self::subject_id(i);
        let encounters =
            records::encounters(&mut rng, &profile, &plan, &subject_id, self.cfg.start);
        History {
            traveller: Traveller {
                subject_id,
                category: profile.category,
                admissions: records::admissions(&profile, &plan),
            },
            encounters,
            injected,
        }
    }

    /// Every traveller's history, in subject id order.
    pub fn histories(&self) -> impl Iterator<Item = History> + '_ {
        (0..self.cfg.travellers).map(|i| self.history(i))
    }
}

/// A uniform draw in `0..1`.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    rng.random::<f64>()
}

#[cfg(test)]
mod tests;
