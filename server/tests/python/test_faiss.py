"""facegate against Faiss's exact IndexFlatIP (the official faiss-cpu wheel)
on the same rows, through the real server and the gRPC API: galleries built
with facegate-index from a .npy, served by the real server on its exact CPU
engine, and each probe's Identify answer compared with Faiss's top rows
reduced to distinct subjects. The f32 scan must give Faiss's answers; the
int8 scan with its f16 re-score must recall them. The same assertions as
benchmarks/tests/faiss_side_by_side.rs (run on demand with the benchmarks'
`faiss` feature, which builds Faiss from source)."""

import subprocess

import faiss
import grpc
import numpy as np
import pytest
from conftest import BIN, TAG, pb, rpc, serve

DIM = 64
ROWS = 20_000
PROBES = 64
K = 10


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def subject(row):
    # Two templates per subject, as in the Faiss benchmark.
    return f"s{row // 2}"


def mate(j):
    """The gallery row that the mated probe j (every even one) was made from."""
    return j * 301 % ROWS


def distinct_subjects(rows, scores, k):
    """Faiss ranks rows; facegate ranks subjects: the first k distinct
    subjects of a best-first row ranking, each with its best row's score
    (benchmarks/src/faiss_peer.rs distinct_subjects)."""
    out = []
    for row, score in zip(rows, scores):
        s = subject(int(row))
        if all(t != s for t, _ in out):
            out.append((s, float(score)))
            if len(out) == k:
                break
    return out


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """Unit-norm float32 gallery rows written as .npy plus an ids file, and
    probes: random ones, and (every even probe) a gallery row plus as much
    noise again, renormalised."""
    d = tmp_path_factory.mktemp("faiss")
    rng = np.random.default_rng(2024)
    rows = unit(rng.standard_normal((ROWS, DIM), dtype=np.float32))
    probes = unit(rng.standard_normal((PROBES, DIM), dtype=np.float32))
    for j in range(0, PROBES, 2):
        probes[j] += rows[mate(j)]
    probes = unit(probes)
    np.save(d / "gallery.npy", rows)
    (d / "gallery_ids.txt").write_text("".join(f"{subject(i)}\n" for i in range(ROWS)))
    return d, rows, probes


@pytest.fixture(scope="module")
def theirs(population):
    """Faiss's top-K subjects per probe, from its top 2K rows (two rows per
    subject, so 2K rows always hold K subjects)."""
    _, rows, probes = population
    index = faiss.IndexFlatIP(DIM)
    index.add(rows)
    scores, found = index.search(probes, 2 * K)
    assert found.shape == (PROBES, 2 * K) and (found >= 0).all()
    ranked = [distinct_subjects(f, s, K) for f, s in zip(found, scores)]
    assert all(len(t) == K for t in ranked)
    return ranked


@pytest.fixture(scope="module", params=["f32", "int8"])
def ours(request, population):
    """(scan type, each probe's Identify candidates as (subject, score)) from
    the real server over a gallery of that scan type."""
    d, _, probes = population
    dtype = request.param
    gallery = d / f"{dtype}.fgal"
    subprocess.run([str(BIN / "facegate-index"), "build", "--embeddings", d / "gallery.npy",
                    "--ids", d / "gallery_ids.txt", "--out", gallery, "--dtype", dtype,
                    "--model-tag", TAG], check=True, capture_output=True)
    # The exact CPU engine, as the Rust side-by-side test: `auto` would take
    # a hardware GPU where there is one.
    server = serve(gallery, d / f"data-{dtype}", "--engine", "cpu")
    ports, _ = next(server)
    try:
        with grpc.insecure_channel(ports) as channel:
            matcher = rpc.MatcherStub(channel)
            answers = []
            for j, probe in enumerate(probes):
                resp = matcher.Identify(pb.IdentifyRequest(probe=probe.tolist(), top_k=K, model_tag=TAG,
                                                           request_id=f"p{j}"), timeout=30)
                assert resp.request_id == f"p{j}"
                assert [c.rank for c in resp.candidates] == list(range(1, K + 1))
                answers.append([(c.subject_id, c.score) for c in resp.candidates])
    finally:
        next(server, None)  # stops it, and checks that it drained cleanly
    return dtype, answers


def agreement(ours, theirs):
    """Recall of Faiss's subjects in facegate's answers, probes with the same
    top-1 subject, and the largest score difference at the same rank
    (benchmarks/src/faiss_peer.rs agreement)."""
    hits = wanted = top1 = 0
    diff = 0.0
    for f, x in zip(ours, theirs):
        wanted += len(x)
        hits += sum(any(c == s for c, _ in f) for s, _ in x)
        top1 += f[0][0] == x[0][0]
        diff = max([diff] + [abs(a - b) for (_, a), (_, b) in zip(f, x)])
    return {"recall": hits / wanted, "top1_same": top1, "probes": min(len(ours), len(theirs)),
            "max_score_diff_at_rank": diff}


def test_facegate_finds_what_faiss_flat_ip_finds(ours, theirs):
    dtype, answers = ours
    a = agreement(answers, theirs)
    print(f"{dtype}: {a}")
    assert a["probes"] == PROBES
    if dtype == "f32":
        # Same precision: the same subjects, the same scores.
        assert a["recall"] == 1.0, a
        assert a["max_score_diff_at_rank"] < 1e-5, a
    else:
        # int8 scan + f16 re-score: every probe's best subject, nearly every
        # subject, and scores within f16 rounding.
        assert a["recall"] >= 0.99, a
        assert a["top1_same"] == PROBES, a
        assert a["max_score_diff_at_rank"] < 2e-3, a


def test_mated_probes_find_their_own_subject_first(ours, theirs):
    _, answers = ours
    for j in range(0, PROBES, 2):
        assert theirs[j][0][0] == subject(mate(j)), j
        assert answers[j][0][0] == subject(mate(j)), j
