//! The time, as everything that expires or is dated reads it: manifests'
//! validity windows now, retention and encounters next.
//!
//! Code that depends on "now" takes a [`Clock`] rather than calling
//! `SystemTime::now()`, so that a test (or a simulation of a month of
//! crossings) can set and advance time with a [`ManualClock`] and see
//! expiries happen exactly when they should, without sleeping.
//!
//! Time is [`UnixMillis`]: milliseconds since the Unix epoch, UTC, as an
//! `i64`. Not `SystemTime`, because every place the value goes already
//! speaks integers: SQLite stores it as an INTEGER that indexes and compares
//! exactly, the API carries `*_unix_ms` fields (`captured_at_unix_ms`), and
//! the audit trail writes `time_unix_ms`. An integer is totally ordered and
//! converts without the fallible `duration_since`; the newtype keeps it from
//! being mixed up with a duration or a count.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant: milliseconds since 1970-01-01T00:00:00Z (negative before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The instant of a `SystemTime`, saturating far outside ±292 million
    /// years (no real clock gets there; saturating beats an error path).
    pub fn from_system_time(t: SystemTime) -> UnixMillis {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match t.duration_since(UNIX_EPOCH) {
            Ok(after) => UnixMillis(ms(after)),
            Err(before) => UnixMillis(-ms(before.duration())),
        }
    }

    /// `self` moved later by `d` (saturating), for deadlines such as
    /// "valid for 12 hours from now".
    pub fn plus(self, d: Duration) -> UnixMillis {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        UnixMillis(self.0.saturating_add(ms))
    }

    /// `self` moved earlier by `d` (saturating).
    pub fn minus(self, d: Duration) -> UnixMillis {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        UnixMillis(self.0.saturating_sub(ms))
    }
}

impl std::fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms since the Unix epoch", self.0)
    }
}

/// A source of the current time, shared across threads (the server's
/// request handlers and its expiry timer read the same clock).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> UnixMillis;
}

/// The operating system's wall clock: what the server runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        UnixMillis::from_system_time(SystemTime::now())
    }
}

/// A clock that moves only when told: for tests and simulations that must
/// decide exactly when a window opens or closes. Shared by reference (or in
/// an `Arc`) between the code under test and the test that drives it.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: UnixMillis) -> ManualClock {
        ManualClock {
            now: AtomicI64::new(start.0),
        }
    }

    /// Sets the time (it may go backwards: a test of a clock step is legal).
    pub fn set(&self, t: UnixMillis) {
        self.now.store(t.0, Ordering::SeqCst);
    }

    /// Moves the time forward by `d` and returns the new time.
    pub fn advance(&self, d: Duration) -> UnixMillis {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let before = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            })
            .unwrap_or_else(|t| t);
        UnixMillis(before.saturating_add(ms))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.now.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(UnixMillis(1_000));
        assert_eq!(c.now(), UnixMillis(1_000));
        assert_eq!(c.advance(Duration::from_secs(2)), UnixMillis(3_000));
        assert_eq!(c.now(), UnixMillis(3_000));
        c.set(UnixMillis(500));
        assert_eq!(c.now(), UnixMillis(500));
        c.set(UnixMillis(i64::MAX - 1));
        assert_eq!(c.advance(Duration::from_secs(1)), UnixMillis(i64::MAX));
    }

    #[test]
    fn system_clock_agrees_with_system_time() {
        let before = UnixMillis::from_system_time(SystemTime::now());
        let now = SystemClock.now();
        assert!(
            now >= before && now.0 - before.0 < 60_000,
            "{now} vs {before}"
        );
        let dyn_clock: &dyn Clock = &SystemClock;
        assert!(dyn_clock.now() >= now);
    }

    #[test]
    fn conversions_saturate_and_handle_times_before_the_epoch() {
        let t = UNIX_EPOCH - Duration::from_millis(1_500);
        assert_eq!(UnixMillis::from_system_time(t), UnixMillis(-1_500));
        assert_eq!(UnixMillis(5).plus(Duration::from_millis(7)), UnixMillis(12));
        assert_eq!(
            UnixMillis(5).minus(Duration::from_millis(7)),
            UnixMillis(-2)
        );
        assert_eq!(
            UnixMillis(i64::MAX).plus(Duration::MAX),
            UnixMillis(i64::MAX)
        );
        assert_eq!(
            UnixMillis(i64::MIN).minus(Duration::MAX),
            UnixMillis(i64::MIN)
        );
    }
}
