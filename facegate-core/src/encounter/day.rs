//! Calendar days, as stay rules count them: the 90-in-180 rule counts the
//! day of entry and the day of exit as days of stay, whatever the hour, so
//! the unit of every stay computation is a whole day, not an instant.
//!
//! Days are UTC calendar days. The EU rules count days in the local time of
//! the border crossing point; a national deployment whose ports span time
//! zones picks one reference zone, and UTC is the one every record already
//! carries (`UnixMillis`). The choice is documented in docs/encounters.md.

use std::fmt;
use std::str::FromStr;

use time::macros::format_description;

use crate::clock::UnixMillis;

const MS_PER_DAY: i64 = 86_400_000;
/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// A UTC calendar day: days since 1970-01-01 (negative before). Ordered and
/// subtracted as an integer; shown and parsed as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

/// A day that is not a valid `YYYY-MM-DD` date.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{text:?} is not a date of the form YYYY-MM-DD")]
pub struct BadDay {
    /// What was given.
    pub text: String,
}

impl Day {
    /// The UTC day an instant falls on (instants before 1970 round down).
    pub fn of(t: UnixMillis) -> Day {
        let days = t.0.div_euclid(MS_PER_DAY);
        Day(i32::try_from(days).unwrap_or(if days < 0 { i32::MIN } else { i32::MAX }))
    }

    /// The instant this day begins (00:00 UTC).
    pub fn start(self) -> UnixMillis {
        UnixMillis(i64::from(self.0) * MS_PER_DAY)
    }

    /// `n` days later (earlier when negative), saturating.
    pub fn plus(self, n: i32) -> Day {
        Day(self.0.saturating_add(n))
    }

    /// Days from `earlier` to `self` (negative when `earlier` is later).
    pub fn since(self, earlier: Day) -> i32 {
        self.0 - earlier.0
    }

    fn date(self) -> Option<time::Date> {
        time::Date::from_julian_day(self.0.checked_add(UNIX_EPOCH_JULIAN_DAY)?).ok()
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.date() {
            Some(d) => write!(f, "{d}"),
            // Beyond time's range (±9999 years): still say which day.
            None => write!(f, "day {} since 1970-01-01", self.0),
        }
    }
}

impl FromStr for Day {
    type Err = BadDay;

    fn from_str(text: &str) -> Result<Day, BadDay> {
        let format = format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(text, &format).map_err(|_| BadDay { text: text.into() })?;
        Ok(Day(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_through_text_and_instants() {
        let d: Day = "2026-11-29".parse().unwrap();
        assert_eq!(d.to_string(), "2026-11-29");
        assert_eq!(Day(0).to_string(), "1970-01-01");
        assert_eq!(Day(-1).to_string(), "1969-12-31");
        assert_eq!(
            "2024-02-29".parse::<Day>().unwrap().plus(1).to_string(),
            "2024-03-01"
        );
        assert_eq!(Day::of(d.start()), d);
        assert_eq!(Day::of(UnixMillis(d.start().0 + MS_PER_DAY - 1)), d);
        assert_eq!(Day::of(UnixMillis(-1)), Day(-1));
        assert_eq!(d.plus(179).since(d), 179);
    }

    #[test]
    fn bad_dates_are_refused() {
        for bad in ["2026-02-30", "2026-13-01", "29/11/2026", "", "2026-1-1x"] {
            assert_eq!(
                bad.parse::<Day>(),
                Err(BadDay { text: bad.into() }),
                "{bad}"
            );
        }
    }
}
