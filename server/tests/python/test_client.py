"""The proto works for clients outside Rust: a grpcio client generated with
grpcio-tools calls Identify and Verify against the real server binary."""

import grpc
import numpy as np
import pytest
from conftest import TAG, pb


def truth(population):
    rows = (population / "probes_truth.csv").read_text().splitlines()[1:]
    return [r.split(",") for r in rows]


def test_identify_finds_good_quality_mates(matcher, population):
    probes = np.load(population / "probes.npy")
    assert probes.dtype == np.float32 and probes.shape == (40, 128)
    found = good = 0
    for (j, mated, subject, group, noise), probe in zip(truth(population), probes):
        resp = matcher.Identify(pb.IdentifyRequest(probe=probe.tolist(), top_k=3, model_tag=TAG,
                                                   request_id=f"p{j}"), timeout=5)
        assert resp.request_id == f"p{j}"
        assert [c.rank for c in resp.candidates] == [1, 2, 3]
        scores = [c.score for c in resp.candidates]
        assert scores == sorted(scores, reverse=True)
        if float(noise) < 1.2:
            good += 1
            found += resp.candidates[0].subject_id == subject
    assert good >= 10 and found == good


def test_verify_accepts_the_mate_and_rejects_an_impostor(matcher, population):
    probes = np.load(population / "probes.npy")
    rows = truth(population)
    j = next(i for i, r in enumerate(rows) if float(r[4]) < 1.0)
    mate = rows[j][2]
    other = next(r[2] for r in rows if r[2] != mate)
    ok = matcher.Verify(pb.VerifyRequest(probe=probes[j].tolist(), subject_id=mate, model_tag=TAG), timeout=5)
    assert ok.match and ok.score > 0.4 and ok.templates_compared >= 1
    no = matcher.Verify(pb.VerifyRequest(probe=probes[j].tolist(), subject_id=other, model_tag=TAG), timeout=5)
    assert not no.match and no.score < ok.score


def test_errors_carry_their_codes(matcher, population):
    probe = np.load(population / "probes.npy")[0].tolist()
    with pytest.raises(grpc.RpcError) as e:
        matcher.Identify(pb.IdentifyRequest(probe=probe[:5], top_k=3, model_tag=TAG), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected dimension 128, got 5" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        matcher.Identify(pb.IdentifyRequest(probe=probe, top_k=3, model_tag="other"), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as e:
        matcher.Verify(pb.VerifyRequest(probe=probe, subject_id="nobody", model_tag=TAG), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
