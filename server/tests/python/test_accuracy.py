"""facegate-index eval checked from outside: synth, build and eval run as
binaries, then FPIR, FNIR, the thresholds' rule, the CMC, per-group rates
and FNMR are recomputed with numpy from scores.csv alone and compared with
report.json. Every figure is a count, so the comparison is exact."""

import csv
import json
import subprocess

import numpy as np
import pytest
from conftest import BIN


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    idx = str(BIN / "facegate-index")
    subprocess.run([idx, "synth", "--out-dir", d, "--subjects", "1500", "--probes", "1000", "--dim", "128",
                    "--mated-fraction", "0.5", "--seed", "11"], check=True, capture_output=True)
    subprocess.run([idx, "build", "--embeddings", d / "gallery.npy", "--ids", d / "gallery_ids.txt",
                    "--out", d / "g.fgal"], check=True, capture_output=True)
    subprocess.run([idx, "eval", "--gallery", d / "g.fgal", "--probes", d / "probes.npy", "--truth",
                    d / "probes_truth.csv", "--out-dir", d / "out", "--target-fpir", "0.001,0.003,0.01,0.05",
                    "--bootstrap", "100", "--impostor-pairs", "20000"], check=True, capture_output=True)
    report = json.loads((d / "out" / "report.json").read_text())
    with open(d / "out" / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    f32 = lambda s: np.float32(s) if s else np.float32(-np.inf)  # noqa: E731
    scores = {
        "mated": np.array([r["mated"] == "true" for r in rows]),
        "group": np.array([r["group"] for r in rows]),
        "mate_rank": np.array([int(r["mate_rank"]) for r in rows]),
        "mate_score": np.array([f32(r["mate_score"]) for r in rows], dtype=np.float32),
        "best": np.array([f32(r["best_score"]) for r in rows], dtype=np.float32),
    }
    return report, scores


def fpir_errors(s, t, mask=True):
    return int(np.sum(~s["mated"] & mask & (s["best"] >= t)))


def fnir_errors(s, t, mask=True):
    hit = (s["mate_rank"] == 1) & (s["best"] >= t)
    return int(np.sum(s["mated"] & mask & ~hit))


def test_scores_cover_every_probe(evaluation):
    report, s = evaluation
    assert len(s["mated"]) == report["probes"]["total"] == 1000
    assert int(s["mated"].sum()) == report["probes"]["mated"]


def test_fnir_at_fpir_and_the_threshold_rule(evaluation):
    report, s = evaluation
    n = int(np.sum(~s["mated"]))
    points = report["identification"]["fnir_at_fpir"]
    assert [p["target_fpir"] for p in points] == [0.001, 0.003, 0.01, 0.05]
    for p in points:
        if p["at"] is None:
            assert 1 / n > p["target_fpir"]
            continue
        t = np.float32(p["at"]["threshold"])
        assert p["at"]["fpir"]["errors"] == fpir_errors(s, t)
        assert p["at"]["fpir"]["trials"] == n
        assert p["at"]["fnir"]["errors"] == fnir_errors(s, t)
        # The lowest such threshold: one f32 lower, FPIR exceeds the target.
        assert fpir_errors(s, t) / n <= p["target_fpir"]
        lower = np.nextafter(t, np.float32(-np.inf), dtype=np.float32)
        assert fpir_errors(s, lower) / n > p["target_fpir"]
    assert sum(p["at"] is not None for p in points) >= 3


def test_cmc(evaluation):
    report, s = evaluation
    assert len(report["cmc"]) == 50
    for point in report["cmc"]:
        r = point["rank"]
        missed = s["mated"] & ((s["mate_rank"] == 0) | (s["mate_rank"] > r))
        assert point["fnir"]["errors"] == int(missed.sum())
        assert point["fnir"]["trials"] == int(s["mated"].sum())


def test_operating_threshold_per_group_and_fnmr(evaluation):
    report, s = evaluation
    t = np.float32(report["threshold"]["value"])
    at = report["identification"]["at_operating_threshold"]
    assert at["fpir"]["errors"] == fpir_errors(s, t)
    assert at["fnir"]["errors"] == fnir_errors(s, t)
    for g in report["groups"]["groups"]:
        in_group = s["group"] == g["group"]
        assert g["fpir"]["rate"]["errors"] == fpir_errors(s, t, in_group)
        assert g["fpir"]["rate"]["trials"] == int(np.sum(in_group & ~s["mated"]))
        assert g["fnir"]["rate"]["errors"] == fnir_errors(s, t, in_group)
    fnmr = report["verification"]["at_operating_threshold"]["fnmr"]
    genuine = s["mate_score"][s["mated"]]
    assert fnmr["trials"] == len(genuine)
    assert fnmr["errors"] == int(np.sum(genuine < t))
