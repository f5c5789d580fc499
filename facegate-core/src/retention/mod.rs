//! Retention: how long each kind of data may live ([`policy`]), and the
//! purges that remove what the policy expires so that its bytes leave the
//! disk ([`encounters`]; manifests expire with their window in
//! `crate::manifest`). Every rule reads "now" from an injected
//! [`crate::clock::Clock`], so tests move time instead of waiting.

pub mod encounters;
pub mod policy;
pub mod report;

pub use encounters::{
    PurgeReport, ScheduledErasure, ScheduledPage, StayErasure, erasure_schedule, purge_encounters,
    scheduled_erasures,
};
pub use policy::{
    AuditRule, CaptureTemplateRules, EncounterRules, Event, NoticeRules, PolicyError,
    RetentionPolicy, Rule,
};
pub use report::{Line, ReportError, report};
