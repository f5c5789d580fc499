"""Manifest galleries from a Python back office and port: a manifest staged
over the Manifests service (admin listener), then searched 1:few by
Identify with manifest_id, with and without the national fallback."""

import time

import grpc
import numpy as np
import pytest
from conftest import TAG, mpb, pb


def truth(population):
    rows = (population / "probes_truth.csv").read_text().splitlines()[1:]
    return [r.split(",") for r in rows]


def stage(manifests, manifest_id, subject_ids):
    now = int(time.time() * 1000)
    header = mpb.ManifestHeader(manifest_id=manifest_id, kind=mpb.MANIFEST_KIND_FLIGHT, carrier="PY",
                                voyage="101", port_id="PY-PORT", direction=pb.DIRECTION_EXIT,
                                scheduled_unix_ms=now + 3_600_000, valid_from_unix_ms=now - 60_000,
                                valid_until_unix_ms=now + 7_200_000)
    return manifests.Stage(mpb.StageManifestRequest(header=header, subject_ids=subject_ids), timeout=5)


def good_probes(population):
    """(probe, mate) for the good-quality captures: their mate ranks first."""
    probes = np.load(population / "probes.npy")
    return [(probes[int(j)], subject) for j, _, subject, _, noise in truth(population) if float(noise) < 1.2]


def test_a_staged_manifest_is_searched_alone(matcher, manifests, population):
    pairs = good_probes(population)
    assert len(pairs) >= 6
    on_board = sorted({s for _, s in pairs[:3]} | {"S999999999"})
    staged = stage(manifests, "PY-FLIGHT-1", on_board)
    assert staged.newly_staged and staged.travellers == len(on_board)
    assert list(staged.not_in_gallery) == ["S999999999"]
    got = manifests.Get(mpb.GetManifestRequest(manifest_id="PY-FLIGHT-1"), timeout=5)
    assert sorted(got.subject_ids) == on_board

    for probe, mate in pairs[:3]:
        resp = matcher.Identify(pb.IdentifyRequest(probe=probe.tolist(), top_k=5, model_tag=TAG,
                                                   manifest_id="PY-FLIGHT-1"), timeout=5)
        assert resp.answered_by == pb.SEARCH_SCOPE_MANIFEST and resp.manifest_id == "PY-FLIGHT-1"
        assert resp.match and resp.candidates[0].subject_id == mate
        assert {c.subject_id for c in resp.candidates} <= set(on_board)

    # A traveller not on the manifest: only manifest subjects come back, and
    # with the fallback the national search finds them.
    probe, mate = next((p, s) for p, s in pairs if s not in on_board)
    scoped = matcher.Identify(pb.IdentifyRequest(probe=probe.tolist(), top_k=5, model_tag=TAG,
                                                 manifest_id="PY-FLIGHT-1"), timeout=5)
    assert not scoped.match and mate not in {c.subject_id for c in scoped.candidates}
    fell_back = matcher.Identify(pb.IdentifyRequest(probe=probe.tolist(), top_k=5, model_tag=TAG,
                                                    manifest_id="PY-FLIGHT-1", fallback=True), timeout=5)
    assert fell_back.answered_by == pb.SEARCH_SCOPE_MANIFEST_THEN_NATIONAL
    assert fell_back.match and fell_back.candidates[0].subject_id == mate


def test_manifest_errors_carry_their_codes(matcher, manifests, population):
    probe = np.load(population / "probes.npy")[0].tolist()
    with pytest.raises(grpc.RpcError) as e:
        matcher.Identify(pb.IdentifyRequest(probe=probe, top_k=3, model_tag=TAG, manifest_id="NO-SUCH"),
                         timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    stage(manifests, "PY-FLIGHT-2", ["S000000001"])
    manifests.Close(mpb.CloseManifestRequest(manifest_id="PY-FLIGHT-2"), timeout=5)
    with pytest.raises(grpc.RpcError) as e:
        matcher.Identify(pb.IdentifyRequest(probe=probe, top_k=3, model_tag=TAG, manifest_id="PY-FLIGHT-2"),
                         timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
