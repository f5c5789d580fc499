//! A plan's crossings made into records: ports, lanes, carriers, methods,
//! decisions, scores, capture and recording times.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::trips::{Dropped, Kind, Plan, Profile, class};
use super::unit;
use crate::clock::UnixMillis;
use crate::encounter::day::Day;
use crate::encounter::model::{Admission, CaptureContext, Decision, Encounter, Method};
use crate::manifest::Direction;

/// How a port is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PortKind {
    Air,
    Land,
    Sea,
}

/// A port of entry and its share of crossings (weights, out of 100).
pub(super) struct Port {
    pub code: &'static str,
    pub kind: PortKind,
    weight: u32,
}

const fn port(code: &'static str, kind: PortKind, weight: u32) -> Port {
    Port { code, kind, weight }
}

/// 12 airports, 4 land crossings and 2 sea ports.
pub(super) const PORTS: [Port; 18] = [
    port("JFK", PortKind::Air, 14),
    port("LAX", PortKind::Air, 12),
    port("MIA", PortKind::Air, 10),
    port("SFO", PortKind::Air, 7),
    port("ORD", PortKind::Air, 6),
    port("ATL", PortKind::Air, 6),
    port("IAD", PortKind::Air, 5),
    port("EWR", PortKind::Air, 5),
    port("IAH", PortKind::Air, 4),
    port("SEA", PortKind::Air, 3),
    port("BOS", PortKind::Air, 3),
    port("HNL", PortKind::Air, 2),
    port("SAN-YSIDRO", PortKind::Land, 8),
    port("EL-PASO", PortKind::Land, 4),
    port("BLAINE", PortKind::Land, 3),
    port("DETROIT", PortKind::Land, 3),
    port("PORT-MIAMI", PortKind::Sea, 3),
    port("PORT-CANAVERAL", PortKind::Sea, 2),
];

const AIRLINES: [&str; 16] = [
    "AA", "UA", "DL", "BA", "LH", "AF", "KL", "JL", "NH", "EK", "QR", "AC", "AM", "LA", "TK", "SQ",
];
const CRUISE_LINES: [&str; 4] = ["CCL", "RCL", "NCL", "MSC"];
const BUS_LINES: [&str; 2] = ["GREYHOUND", "FLIXBUS"];

/// A home port, by weight.
pub(super) fn draw_port(rng: &mut ChaCha8Rng) -> usize {
    let total: u32 = PORTS.iter().map(|p| p.weight).sum();
    let mut x = rng.random_range(0..total);
    for (i, p) in PORTS.iter().enumerate() {
        if x < p.weight {
            return i;
        }
        x -= p.weight;
    }
    0
}

/// A trip's entry port: the home port four times in five.
pub(super) fn trip_port(rng: &mut ChaCha8Rng, home: usize) -> usize {
    if unit(rng) < 0.8 {
        home
    } else {
        draw_port(rng)
    }
}

/// The port of the crossing at the other end of a trip: the same one
/// nine times in ten.
pub(super) fn exit_port(rng: &mut ChaCha8Rng, port: usize) -> usize {
    if unit(rng) < 0.9 {
        port
    } else {
        draw_port(rng)
    }
}

/// The threshold each port's matcher decides at (most use the server's
/// default; a few chose their own).
fn threshold(port: usize) -> f32 {
    [0.35, 0.35, 0.33, 0.40][port % 4]
}

/// A visitor's admissions: one per stay, on its entry day, at its port.
pub(super) fn admissions(p: &Profile, plan: &Plan) -> Vec<Admission> {
    if p.kind == Kind::Resident {
        return Vec::new();
    }
    plan.trips
        .iter()
        .filter_map(|t| {
            Some(Admission {
                class: class(p.kind).to_string(),
                port: PORTS[t.ports.0].code.to_string(),
                day: t.first,
                rule: t.rule?,
            })
        })
        .collect()
}

/// One crossing in the records: when, which way, where; `unmatched`
/// when the capture named nobody.
struct Leg {
    day: Day,
    direction: Direction,
    port: usize,
    unmatched: bool,
}

/// The crossings of `plan` in order, less the one dropped.
fn legs(p: &Profile, plan: &Plan) -> Vec<Leg> {
    let leg = |day, direction, port| Leg {
        day,
        direction,
        port,
        unmatched: false,
    };
    let resident = p.kind == Kind::Resident;
    let (inward, outward) = if resident {
        (Direction::Exit, Direction::Entry)
    } else {
        (Direction::Entry, Direction::Exit)
    };
    let mut out = Vec::new();
    if let Some((day, port)) = plan.resident_return
        && plan.dropped != Some(Dropped::EntryBefore { trip: 0 })
    {
        out.push(leg(day, Direction::Entry, port));
    }
    for (k, t) in plan.trips.iter().enumerate() {
        let entry_dropped = |trip| plan.dropped == Some(Dropped::EntryBefore { trip });
        let exit = match plan.dropped {
            Some(Dropped::Exit { trip, unmatched }) if trip == k => Some(unmatched),
            _ => None,
        };
        // A visitor's trip is entry then exit; a resident's is exit then return.
        let (first_kept, second_kept) = if resident {
            (exit != Some(false), !entry_dropped(k + 1))
        } else {
            (!entry_dropped(k), exit != Some(false))
        };
        if first_kept {
            let mut l = leg(t.first, inward, t.ports.0);
            l.unmatched = resident && exit == Some(true);
            out.push(l);
        }
        if let (Some(day), true) = (t.second, second_kept) {
            let mut l = leg(day, outward, t.ports.1);
            l.unmatched = !resident && exit == Some(true);
            out.push(l);
        }
    }
    out
}

/// The records of `plan`'s crossings, in capture order.
pub(super) fn encounters(
    rng: &mut ChaCha8Rng,
    p: &Profile,
    plan: &Plan,
    subject_id: &str,
    start: Day,
) -> Vec<Encounter> {
    let mut last: Option<UnixMillis> = None;
    let mut out = Vec::new();
    for (n, leg) in legs(p, plan).iter().enumerate() {
        let at = capture_time(rng, leg.day, last);
        last = Some(at);
        out.push(capture(rng, p, leg, at, subject_id, n, start));
    }
    out
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A time between 05:00 and 22:00 on `day`, after `previous` when that
/// was the same day (a same-day entry and exit: the exit an hour or more
/// later).
fn capture_time(rng: &mut ChaCha8Rng, day: Day, previous: Option<UnixMillis>) -> UnixMillis {
    let start = day.start().0;
    let at = start + rng.random_range(5 * HOUR_MS..22 * HOUR_MS);
    match previous {
        Some(prev) if prev.0 >= at - HOUR_MS && prev.0 >= start => {
            let from = (prev.0 + HOUR_MS).min(start + DAY_MS - 1);
            UnixMillis(rng.random_range(from..start + DAY_MS))
        }
        _ => UnixMillis(at),
    }
}

/// One encounter record.
fn capture(
    rng: &mut ChaCha8Rng,
    p: &Profile,
    leg: &Leg,
    at: UnixMillis,
    subject_id: &str,
    n: usize,
    start: Day,
) -> Encounter {
    let port = &PORTS[leg.port];
    let (carrier, voyage) = carriage(rng, p, leg.port);
    let method = method_of(rng, port.kind, leg.direction, !carrier.is_empty());
    let (lane, principal) = match (port.kind, leg.direction) {
        (PortKind::Air, Direction::Entry) => ("K", "kiosks"),
        (PortKind::Air, Direction::Exit) => ("G", "gates"),
        (PortKind::Sea, _) => ("T", "terminals"),
        (PortKind::Land, _) => ("L", "booths"),
    };
    let threshold = threshold(leg.port);
    let (decision, score) = decide(rng, threshold, leg.unmatched);
    let tag = if leg.direction == Direction::Entry {
        "E"
    } else {
        "X"
    };
    let day = Day::of(at);
    let delay = match unit(rng) {
        u if u < 0.005 => rng.random_range(HOUR_MS..48 * HOUR_MS),
        _ => rng.random_range(30..900),
    };
    Encounter {
        context: CaptureContext {
            encounter_id: format!("syn-{subject_id}-{n}"),
            direction: leg.direction,
            port: port.code.to_string(),
            lane: format!("{lane}{}", rng.random_range(1..=32)),
            captured_at: at,
            carrier,
            voyage: voyage.clone(),
        },
        manifest_id: (method == Method::Manifest)
            .then(|| format!("{voyage}-{day}-{}-{tag}", port.code)),
        method,
        decision,
        subject_id: (!leg.unmatched).then(|| subject_id.to_string()),
        score,
        threshold,
        principal: format!("{}-{principal}", port.code),
        generation: 1 + (day.since(start).max(0) / 28) as u64,
        recorded_at: UnixMillis(at.0 + delay),
    }
}

/// The traveller's carrier at this port and a flight or voyage of it: a
/// few numbers per carrier and port, so travellers share flights; at land
/// ports most cross on foot or by car (no carrier), one in five by bus.
fn carriage(rng: &mut ChaCha8Rng, p: &Profile, port: usize) -> (String, String) {
    let number = 100 + (port * 53 + p.carrier * 17 + rng.random_range(0..4)) % 900;
    let pick = |names: &[&'static str]| names[p.carrier % names.len()];
    match PORTS[port].kind {
        PortKind::Air => (
            pick(&AIRLINES).into(),
            format!("{}{number}", pick(&AIRLINES)),
        ),
        PortKind::Sea => (
            pick(&CRUISE_LINES).into(),
            format!("{}{number}", pick(&CRUISE_LINES)),
        ),
        PortKind::Land if unit(rng) < 0.2 => (
            pick(&BUS_LINES).into(),
            format!("{}{number}", pick(&BUS_LINES)),
        ),
        PortKind::Land => (String::new(), String::new()),
    }
}

/// Boarding gates search the flight's manifest; arrival kiosks search
/// 1:N or the manifest; officers' booths verify the document 1:1.
fn method_of(rng: &mut ChaCha8Rng, kind: PortKind, d: Direction, carried: bool) -> Method {
    let u = unit(rng);
    match (kind, d) {
        (PortKind::Land, _) if !carried || u < 0.6 => {
            if u < 0.6 {
                Method::Identify
            } else {
                Method::Verify
            }
        }
        (_, Direction::Exit) if u < 0.75 => Method::Manifest,
        (_, Direction::Exit) => Method::Identify,
        (_, Direction::Entry) if u < 0.5 => Method::Manifest,
        (_, Direction::Entry) if u < 0.85 => Method::Identify,
        _ => Method::Verify,
    }
}

/// A match scored above the threshold (97 %), or an officer's decision
/// after a manual check with the matcher's score below it or no face found;
/// an unmatched capture names nobody.
fn decide(rng: &mut ChaCha8Rng, threshold: f32, unmatched: bool) -> (Decision, Option<f32>) {
    if unmatched {
        return (Decision::NoMatch, None);
    }
    if unit(rng) < 0.03 {
        let score = (unit(rng) < 0.5).then(|| threshold - rng.random_range(0.01..0.15));
        return (Decision::OfficerOverride, score);
    }
    let z: f32 = rng.sample(rand_distr::StandardNormal);
    let score = (0.72 + 0.07 * z).clamp(threshold + 0.005, 0.98);
    (Decision::Match, Some(score))
}
