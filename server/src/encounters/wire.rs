//! Encounters between the wire and the domain: each proto message of
//! `facegate.v1.Encounters` to and from the core types, with a clear
//! INVALID_ARGUMENT naming the field for anything malformed.

use facegate_core::clock::UnixMillis;
use facegate_core::encounter::{
    Admission, Category, Change, Day, Decision, Method, StayReport, StayRule, StoredEncounter,
    Traveller,
};
use facegate_core::manifest::Direction;
use facegate_core::retention::ScheduledErasure;

use crate::proto;
use crate::request::RequestError;

/// A day given as `YYYY-MM-DD`, or `today` when empty.
pub fn day_or_today(text: &str, field: &str, today: Day) -> Result<Day, RequestError> {
    if text.is_empty() {
        return Ok(today);
    }
    text.parse().map_err(|e| RequestError::field(field, e))
}

/// The proto decision of a domain one.
pub fn decision(d: Decision) -> proto::EncounterDecision {
    match d {
        Decision::Match => proto::EncounterDecision::Match,
        Decision::NoMatch => proto::EncounterDecision::NoMatch,
        Decision::OfficerOverride => proto::EncounterDecision::OfficerOverride,
    }
}

/// The domain decision of a proto one; UNSPECIFIED is refused.
pub fn decision_from(d: i32) -> Result<Decision, RequestError> {
    match proto::EncounterDecision::try_from(d) {
        Ok(proto::EncounterDecision::Match) => Ok(Decision::Match),
        Ok(proto::EncounterDecision::NoMatch) => Ok(Decision::NoMatch),
        Ok(proto::EncounterDecision::OfficerOverride) => Ok(Decision::OfficerOverride),
        _ => Err(RequestError::field(
            "decision",
            "give MATCH, NO_MATCH or OFFICER_OVERRIDE",
        )),
    }
}

fn method(m: Method) -> proto::EncounterMethod {
    match m {
        Method::Identify => proto::EncounterMethod::Identify,
        Method::Verify => proto::EncounterMethod::Verify,
        Method::Manifest => proto::EncounterMethod::Manifest,
    }
}

/// The proto category of a domain one.
pub fn category(c: Category) -> proto::TravellerCategory {
    match c {
        Category::Citizen => proto::TravellerCategory::Citizen,
        Category::LawfulPermanentResident => proto::TravellerCategory::LawfulPermanentResident,
        Category::NonImmigrantVisa => proto::TravellerCategory::NonImmigrantVisa,
        Category::VisaExempt => proto::TravellerCategory::VisaExempt,
        Category::Other => proto::TravellerCategory::Other,
    }
}

fn category_from(c: i32) -> Result<Category, RequestError> {
    Category::ALL
        .into_iter()
        .find(|k| category(*k) as i32 == c)
        .ok_or_else(|| RequestError::field("traveller.category", "give a category"))
}

fn change(c: &Change) -> proto::EncounterChange {
    proto::EncounterChange {
        changed_at_unix_ms: c.at.0,
        principal: c.principal.clone(),
        old_decision: decision(c.old_decision) as i32,
        old_subject_id: c.old_subject_id.clone().unwrap_or_default(),
        new_decision: decision(c.new_decision) as i32,
        new_subject_id: c.new_subject_id.clone().unwrap_or_default(),
        note: c.note.clone(),
    }
}

/// The proto view of a stored encounter.
pub fn view(s: &StoredEncounter) -> proto::EncounterView {
    let e = &s.encounter;
    let c = &e.context;
    let direction = match c.direction {
        Direction::Entry => proto::Direction::Entry,
        Direction::Exit => proto::Direction::Exit,
    };
    proto::EncounterView {
        record_id: s.record_id,
        capture: Some(proto::CaptureContext {
            port_id: c.port.clone(),
            lane: c.lane.clone(),
            direction: direction as i32,
            captured_at_unix_ms: c.captured_at.0,
            encounter_id: c.encounter_id.clone(),
            carrier: c.carrier.clone(),
            voyage: c.voyage.clone(),
            record: true,
        }),
        manifest_id: e.manifest_id.clone().unwrap_or_default(),
        method: method(e.method) as i32,
        decision: decision(e.decision) as i32,
        subject_id: e.subject_id.clone().unwrap_or_default(),
        score: e.score,
        threshold: e.threshold,
        principal: e.principal.clone(),
        gallery_generation: e.generation,
        recorded_at_unix_ms: e.recorded_at.0,
        changes: s.changes.iter().map(change).collect(),
    }
}

fn rule(r: StayRule) -> proto::StayRule {
    use proto::stay_rule::Rule;
    let rule = match r {
        StayRule::AdmittedUntil(d) => Rule::AdmittedUntil(d.to_string()),
        StayRule::NinetyIn180 => Rule::NinetyIn180(true),
        StayRule::DurationOfStatus => Rule::DurationOfStatus(true),
    };
    proto::StayRule { rule: Some(rule) }
}

fn rule_from(r: Option<&proto::StayRule>, i: usize) -> Result<StayRule, RequestError> {
    use proto::stay_rule::Rule;
    let bad = |what: &str| RequestError::field(format!("admissions[{i}].rule"), what);
    match r.and_then(|r| r.rule.as_ref()) {
        Some(Rule::AdmittedUntil(d)) => Ok(StayRule::AdmittedUntil(
            d.parse()
                .map_err(|e| bad(&format!("admitted_until: {e}")))?,
        )),
        Some(Rule::NinetyIn180(true)) => Ok(StayRule::NinetyIn180),
        Some(Rule::DurationOfStatus(true)) => Ok(StayRule::DurationOfStatus),
        _ => Err(bad(
            "give admitted_until, ninety_in_180 or duration_of_status",
        )),
    }
}

/// The proto traveller of a domain one.
pub fn traveller(t: &Traveller) -> proto::Traveller {
    proto::Traveller {
        subject_id: t.subject_id.clone(),
        category: category(t.category) as i32,
        admissions: t
            .admissions
            .iter()
            .map(|a| proto::Admission {
                class_of_admission: a.class.clone(),
                port_id: a.port.clone(),
                day: a.day.to_string(),
                rule: Some(rule(a.rule)),
            })
            .collect(),
    }
}

/// The domain traveller of a proto one (fields are checked by the store).
pub fn traveller_from(t: Option<&proto::Traveller>) -> Result<Traveller, RequestError> {
    let t = t.ok_or(RequestError::Missing("traveller"))?;
    let admissions = t
        .admissions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Ok(Admission {
                class: a.class_of_admission.clone(),
                port: a.port_id.clone(),
                day: a
                    .day
                    .parse()
                    .map_err(|e| RequestError::field(format!("admissions[{i}].day"), e))?,
                rule: rule_from(a.rule.as_ref(), i)?,
            })
        })
        .collect::<Result<_, RequestError>>()?;
    Ok(Traveller {
        subject_id: t.subject_id.clone(),
        category: category_from(t.category)?,
        admissions,
    })
}

/// One overstay's scheduled erasure, on the wire.
pub fn scheduled_erasure(e: &ScheduledErasure) -> proto::ScheduledErasure {
    proto::ScheduledErasure {
        subject_id: e.subject_id.clone(),
        exit_unix_ms: e.stay.exit_at.0,
        days_over: e.stay.days_over,
        erase_at_unix_ms: e.stay.erase_at.0,
    }
}

/// The proto stay status of a report.
pub fn stay(r: &StayReport) -> proto::StayStatusResponse {
    let s = &r.status;
    let day = |d: Option<Day>| d.map(|d| d.to_string()).unwrap_or_default();
    proto::StayStatusResponse {
        subject_id: r.subject_id.clone(),
        as_of: s.as_of.to_string(),
        category: r.category.map_or(0, |c| category(c) as i32),
        in_country_since: day(s.in_country_since),
        days_used_in_180: s.days_used_in_180,
        days_remaining_in_180: s.days_remaining_in_180,
        admitted_until: day(s.admitted_until),
        days_over: s.days_over,
        past_days_over: s.days_over_in_past_stays,
        rule: s.rule.map(|r| r.name().to_string()).unwrap_or_default(),
        anomalies: s.anomalies.iter().map(ToString::to_string).collect(),
    }
}

/// The period of a ListIrregular request; INVALID_ARGUMENT when empty.
pub fn period(from: i64, until: i64) -> Result<(UnixMillis, UnixMillis), RequestError> {
    if until <= from {
        return Err(RequestError::EmptyPeriod { from, until });
    }
    Ok((UnixMillis(from), UnixMillis(until)))
}
