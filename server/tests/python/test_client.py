"""The proto works for clients outside Rust: a grpcio client generated with
grpcio-tools calls Identify and Verify against the real server binary."""

import pathlib
import re
import subprocess
import sys

import grpc
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "examples" / "python"))
from facegate_client import load_stubs  # noqa: E402

pb, rpc = load_stubs()
BIN = REPO / "target" / "debug"
TAG = "py-test@1"


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    d = tmp_path_factory.mktemp("pop")
    idx = str(BIN / "facegate-index")
    subprocess.run([idx, "synth", "--out-dir", d, "--subjects", "300", "--probes", "40", "--dim", "128",
                    "--mated-fraction", "1.0", "--seed", "5"], check=True, capture_output=True)
    subprocess.run([idx, "build", "--embeddings", d / "gallery.npy", "--ids", d / "gallery_ids.txt",
                    "--out", d / "g.fgal", "--model-tag", TAG], check=True, capture_output=True)
    return d


@pytest.fixture(scope="module")
def matcher(population):
    proc = subprocess.Popen([str(BIN / "facegate"), "serve", "--listen", "127.0.0.1:0",
                             "--metrics-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                             "--gallery", str(population / "g.fgal"),
                             "--data-dir", str(population / "data")], stdout=subprocess.PIPE, text=True)
    m = None
    while m is None:
        line = proc.stdout.readline()
        assert line, "facegate exited before listening"
        m = re.match(r"facegate listening on (\S+)", line)
    channel = grpc.insecure_channel(m.group(1))
    yield rpc.MatcherStub(channel)
    channel.close()
    proc.terminate()
    assert proc.wait(timeout=30) == 0


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
