//! The retention policy: for each traveller category and each kind of
//! data, how long it may live, counted from a stated event. Read from a
//! TOML file (`--retention-policy`); every rule has a documented default
//! (the EU Entry/Exit System's periods and the citizens' 12 hours), so a
//! server without a policy file still has one.
//!
//! ```toml
//! [encounters]
//! citizen = { keep = "12h", from = "recorded" }
//! visa_exempt = { keep = "3years", from = "exit" }
//! overstayer = { keep = "5years", from = "exit" }
//!
//! [audit]
//! keep = "1year"
//!
//! [notices]
//! overstayer_erasure = "3months"
//! ```
//!
//! Durations are humantime's (`"12h"`, `"30days"`, `"3years"`: a year is
//! 365.25 days). A rule missing from the file keeps its default; an unknown
//! key is an error (a typo must not silently keep data longer).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::encounter::Category;

/// The event a retention period is counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// When facegate recorded the item (its own clock): for a citizen's
    /// capture, the verification of their identity.
    Recorded,
    /// The exit that ended the stay the item belongs to; items of a stay
    /// with no recorded exit (still in the country) are kept.
    Exit,
}

/// One rule: keep for `keep` after `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// How long.
    #[serde(with = "humantime_serde_shim")]
    pub keep: Duration,
    /// From what.
    pub from: Event,
}

/// Encounter records' rules, per category, plus the rule for overstayers
/// (whose records are kept longer) and for captures that named nobody.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncounterRules {
    /// Citizens.
    pub citizen: Rule,
    /// Lawful permanent residents.
    pub lawful_permanent_resident: Rule,
    /// Non-immigrant visa holders.
    pub non_immigrant_visa: Rule,
    /// Visa-exempt travellers.
    pub visa_exempt: Rule,
    /// Others.
    pub other: Rule,
    /// Subjects with no traveller file (category unknown).
    pub unknown: Rule,
    /// Any non-citizen whose stay ran past its rule.
    pub overstayer: Rule,
    /// Captures that named nobody (no match): no category to go by.
    pub no_match: Rule,
}

const HOUR: u64 = 3_600;
const YEAR: u64 = 31_557_600; // 365.25 days, as humantime counts a year

const fn rule(seconds: u64, from: Event) -> Rule {
    Rule {
        keep: Duration::from_secs(seconds),
        from,
    }
}

impl Default for EncounterRules {
    /// Citizens: 12 hours from verification (the product's public rule).
    /// Others: 3 years after exit, overstayers 5 (the EU Entry/Exit
    /// System); captures that named nobody: 3 years from the capture.
    fn default() -> Self {
        let three_years_after_exit = rule(3 * YEAR, Event::Exit);
        EncounterRules {
            citizen: rule(12 * HOUR, Event::Recorded),
            lawful_permanent_resident: three_years_after_exit,
            non_immigrant_visa: three_years_after_exit,
            visa_exempt: three_years_after_exit,
            other: three_years_after_exit,
            unknown: three_years_after_exit,
            overstayer: rule(5 * YEAR, Event::Exit),
            no_match: rule(3 * YEAR, Event::Recorded),
        }
    }
}

impl EncounterRules {
    /// The rule for a subject of `category` (`None`: no traveller file).
    pub fn for_category(&self, category: Option<Category>) -> Rule {
        match category {
            Some(Category::Citizen) => self.citizen,
            Some(Category::LawfulPermanentResident) => self.lawful_permanent_resident,
            Some(Category::NonImmigrantVisa) => self.non_immigrant_visa,
            Some(Category::VisaExempt) => self.visa_exempt,
            Some(Category::Other) => self.other,
            None => self.unknown,
        }
    }
}

/// The audit trail's rule: records are kept `keep` beyond the longest
/// period of the data they concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditRule {
    /// Beyond the data's own period.
    #[serde(with = "humantime_serde_shim")]
    pub keep: Duration,
}

impl Default for AuditRule {
    /// One year beyond the data they concern (the EU Entry/Exit System's
    /// access logs).
    fn default() -> Self {
        AuditRule {
            keep: Duration::from_secs(YEAR),
        }
    }
}

/// Capture templates kept in the gallery (an earlier-crossing photo
/// enrolled by the back office): citizens' must go, counted from the
/// verification of their citizenship (their traveller file's last update).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureTemplateRules {
    /// Citizens: removed from the gallery this long after the file says
    /// they are citizens; their bytes leave at the next scheduled
    /// compaction, so this plus the retention and compaction intervals must
    /// stay within the public 12 hours.
    pub citizen: Rule,
}

impl Default for CaptureTemplateRules {
    /// 5 h 30 min: with the default 10-minute purge and 6-hour compaction,
    /// the bytes are gone within 11 h 40 min plus one compaction.
    fn default() -> Self {
        CaptureTemplateRules {
            citizen: rule(5 * HOUR + HOUR / 2, Event::Recorded),
        }
    }
}

/// How long before an erasure it is announced: the EU Entry/Exit System
/// tells the member states three months before an overstayer's data is
/// deleted, so that they can act on it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoticeRules {
    /// An overstayer's records are listed as scheduled for erasure
    /// (`ListScheduledErasures`, and a metric) this long before the purge
    /// may erase them.
    #[serde(with = "humantime_serde_shim")]
    pub overstayer_erasure: Duration,
}

/// Three months as humantime counts them ("3months": 30.44 days each).
const THREE_MONTHS: u64 = 3 * 2_630_016;

impl Default for NoticeRules {
    /// Three months (the EU Entry/Exit System's notice).
    fn default() -> Self {
        NoticeRules {
            overstayer_erasure: Duration::from_secs(THREE_MONTHS),
        }
    }
}

/// The whole policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionPolicy {
    /// Encounter records (and their corrections).
    pub encounters: EncounterRules,
    /// Capture templates in the gallery.
    pub capture_templates: CaptureTemplateRules,
    /// The audit trail.
    pub audit: AuditRule,
    /// Erasures announced before they happen.
    pub notices: NoticeRules,
}

/// A policy file that could not be used; the server does not start on one.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file is not a valid policy (syntax, an unknown key, a bad
    /// duration or event).
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, with its place in the file.
        reason: String,
    },
}

impl RetentionPolicy {
    /// Reads a policy file; rules it does not name keep their defaults.
    pub fn load(path: &Path) -> Result<RetentionPolicy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|error| PolicyError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        toml::from_str(&text).map_err(|e| PolicyError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// The longest any encounter may be kept (the audit trail keeps its
    /// records this long plus its own period).
    pub fn longest_encounter_keep(&self) -> Duration {
        let e = &self.encounters;
        [
            e.citizen,
            e.lawful_permanent_resident,
            e.non_immigrant_visa,
            e.visa_exempt,
            e.other,
            e.unknown,
            e.overstayer,
            e.no_match,
        ]
        .iter()
        .map(|r| r.keep)
        .max()
        .unwrap_or_default()
    }
}

/// Serde of a humantime duration string ("12h", "3years").
mod humantime_serde_shim {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_periods() {
        let p = RetentionPolicy::default();
        assert_eq!(p.encounters.citizen.keep, Duration::from_secs(12 * 3600));
        assert_eq!(p.encounters.citizen.from, Event::Recorded);
        assert_eq!(p.encounters.visa_exempt.from, Event::Exit);
        assert_eq!(
            p.encounters.overstayer.keep,
            humantime::parse_duration("5years").unwrap()
        );
        assert_eq!(p.longest_encounter_keep(), p.encounters.overstayer.keep);
        assert_eq!(
            p.notices.overstayer_erasure,
            humantime::parse_duration("3months").unwrap()
        );
    }

    #[test]
    fn a_file_overrides_what_it_names_and_refuses_typos() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("retention.toml");
        std::fs::write(
            &f,
            "[encounters]\ncitizen = { keep = \"6h\", from = \"recorded\" }\n[audit]\nkeep = \"2years\"\n",
        )
        .unwrap();
        let p = RetentionPolicy::load(&f).unwrap();
        assert_eq!(p.encounters.citizen.keep, Duration::from_secs(6 * 3600));
        assert_eq!(
            p.encounters.visa_exempt,
            EncounterRules::default().visa_exempt
        );
        assert_eq!(p.audit.keep, humantime::parse_duration("2years").unwrap());
        for bad in [
            "[encounters]\ncitizn = { keep = \"6h\", from = \"recorded\" }\n",
            "[encounters]\ncitizen = { keep = \"6 hourz\", from = \"recorded\" }\n",
            "[encounters]\ncitizen = { keep = \"6h\", from = \"entry\" }\n",
            "[encounters]\ncitizen = { keep = \"6h\" }\n",
        ] {
            std::fs::write(&f, bad).unwrap();
            let e = RetentionPolicy::load(&f).unwrap_err();
            assert!(matches!(e, PolicyError::Invalid { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("retention.toml"), "{e}");
        }
    }
}
