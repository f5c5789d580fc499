"""Encounters from a Python port and back office: a traveller's entry is
recorded with its Identify, retried without a second record; their stay is
read back and they are reported as an overstayer; an exit matched to
someone who never entered is listed as irregular and an officer corrects it."""

import datetime

import grpc
import numpy as np
import pytest
from conftest import TAG, epb, pb

DAY_MS = 86_400_000
START = datetime.date(2026, 1, 1)


def at(days):
    """Unix ms of 10:00 UTC, `days` after 2026-01-01."""
    d = datetime.datetime.combine(START + datetime.timedelta(days=days), datetime.time(10),
                                  tzinfo=datetime.timezone.utc)
    return int(d.timestamp() * 1000)


def day(days):
    return (START + datetime.timedelta(days=days)).isoformat()


def enrolled(population, subject_index):
    """An enrolment template of the subject (it matches itself)."""
    ids = (population / "gallery_ids.txt").read_text().split()
    row = ids.index(f"S{subject_index:09d}")
    return np.load(population / "gallery.npy")[row].tolist(), ids[row]


def record(matcher, probe, encounter_id, direction, days):
    capture = pb.CaptureContext(port_id="PY-PORT", lane="2", direction=direction, captured_at_unix_ms=at(days),
                                encounter_id=encounter_id, carrier="PY", voyage="PY1", record=True)
    return matcher.Identify(pb.IdentifyRequest(probe=probe, top_k=3, model_tag=TAG, capture=capture), timeout=5)


def test_an_entry_is_recorded_once_and_its_overstay_reported(matcher, encounters, population):
    probe, who = enrolled(population, 11)
    rule = epb.StayRule(admitted_until=day(30))
    encounters.PutTraveller(epb.PutTravellerRequest(traveller=epb.Traveller(
        subject_id=who, category=epb.TRAVELLER_CATEGORY_NON_IMMIGRANT_VISA,
        admissions=[epb.Admission(class_of_admission="B2", port_id="PY-PORT", day=day(0), rule=rule)])), timeout=5)

    first = record(matcher, probe, "py-in-1", pb.DIRECTION_ENTRY, 0)
    assert first.match and first.candidates[0].subject_id == who
    assert first.encounter.first_record and first.encounter.record_id > 0
    retry = record(matcher, probe, "py-in-1", pb.DIRECTION_ENTRY, 0)
    assert retry.encounter.record_id == first.encounter.record_id and not retry.encounter.first_record

    status = encounters.StayStatus(epb.StayStatusRequest(subject_id=who, as_of=day(40)), timeout=5)
    assert status.in_country_since == day(0) and status.admitted_until == day(30)
    assert status.days_over == 10 and status.rule == "admitted_until"
    over = encounters.ListOverstays(epb.ListOverstaysRequest(as_of=day(40)), timeout=5)
    assert [(o.subject_id, o.days_over) for o in over.overstays] == [(who, 10)]
    history = encounters.TravelHistory(epb.TravelHistoryRequest(subject_id=who), timeout=5)
    assert [e.capture.encounter_id for e in history.encounters] == ["py-in-1"]


def test_an_impostors_exit_is_listed_and_corrected(matcher, encounters, population):
    probe, who = enrolled(population, 12)
    out = record(matcher, probe, "py-out-1", pb.DIRECTION_EXIT, 5)
    listed = encounters.ListIrregular(epb.ListIrregularRequest(
        kind=epb.IRREGULAR_KIND_EXIT_WITHOUT_ENTRY, from_unix_ms=at(0) - DAY_MS, until_unix_ms=at(10)), timeout=5)
    assert out.encounter.record_id in [e.record_id for e in listed.encounters]
    fixed = encounters.Correct(epb.CorrectEncounterRequest(
        record_id=out.encounter.record_id, decision=epb.ENCOUNTER_DECISION_NO_MATCH,
        note="documents did not match the traveller"), timeout=5)
    assert fixed.subject_id == "" and fixed.changes[0].old_subject_id == who

    with pytest.raises(grpc.RpcError) as e:
        record(matcher, probe, "", pb.DIRECTION_EXIT, 5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        encounters.StayStatus(epb.StayStatusRequest(subject_id=who, as_of="2026-13-01"), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_overstayers_erasure_is_announced_three_months_ahead(matcher, encounters, population):
    """Left 70 days over, almost five years ago: the purge will erase the
    records within three months, so the back office is told now."""
    probe, who = enrolled(population, 13)
    today = (datetime.datetime.now(datetime.timezone.utc).date() - START).days
    entry = today - 1826 - 60
    exit_ = entry + 80
    rule = epb.StayRule(admitted_until=day(entry + 10))
    encounters.PutTraveller(epb.PutTravellerRequest(traveller=epb.Traveller(
        subject_id=who, category=epb.TRAVELLER_CATEGORY_NON_IMMIGRANT_VISA,
        admissions=[epb.Admission(class_of_admission="B2", port_id="PY-PORT", day=day(entry), rule=rule)])), timeout=5)
    record(matcher, probe, "py-old-in", pb.DIRECTION_ENTRY, entry)
    record(matcher, probe, "py-old-out", pb.DIRECTION_EXIT, exit_)

    listed = encounters.ListScheduledErasures(epb.ListScheduledErasuresRequest(), timeout=10)
    five_years_ms = int(5 * 365.25 * DAY_MS)
    assert listed.notice_seconds == 3 * 2_630_016
    assert [(e.subject_id, e.exit_unix_ms, e.days_over, e.erase_at_unix_ms) for e in listed.erasures] == [
        (who, at(exit_), 70, at(exit_) + five_years_ms)]
    assert listed.next_page_token == ""
