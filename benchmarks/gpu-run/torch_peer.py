#!/usr/bin/env python3
"""The PyTorch peer of facegate-gpu-bench, on the same data in the same run.

Faiss's exact GPU search (GpuIndexFlat) is a tiled matrix product followed
by a k-selection; this is that algorithm as PyTorch runs it, twice:
  * f16: the gallery dequantised to f16 (int8 row x its scale), probes in
    f16, `probes @ tile.T` over column tiles of the gallery, `topk` per tile,
    then `topk` over the tiles' winners;
  * int8: `torch._int_mm` (int8 x int8 -> int32 on the tensor cores) over
    the same tiles, scaled by probe and row scales, then `topk` likewise.
It reads what `facegate-gpu-bench --dump-dir DIR` left there: the gallery
file bench.fgal, whose int8 rows, scales and row subjects it maps where
gallery.json says their sections are (docs/gallery-format.md), probes.npy
(the largest batch) and answers.npy (facegate's top-k subjects for those
probes), times each batch size (median of --repeats, CUDA-synchronised),
and reports how often its top-k subjects agree with facegate's.
"""

import argparse
import json
import time

import numpy as np
import torch


def args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True, help="facegate-gpu-bench's --dump-dir")
    p.add_argument("--batches", default="1,8,32,64,256,1024")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--tile-rows", type=int, default=1 << 21, help="gallery rows per matrix product")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda", help="cuda; cpu only to check the script runs")
    return p.parse_args()


def quantise(x):
    """Symmetric per-row int8: what the CPU engine does to a probe."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
    return torch.round(x / scale).clamp(-127, 127).to(torch.int8), scale.squeeze(1)


def search_f16(probes16, gallery16, k, tile):
    vals, idx = [], []
    for start in range(0, gallery16.shape[0], tile):
        s = probes16 @ gallery16[start:start + tile].T
        v, i = s.topk(min(k, s.shape[1]), dim=1)
        vals.append(v.float())
        idx.append(i + start)
    v, j = torch.cat(vals, 1).topk(k, dim=1)
    return v, torch.cat(idx, 1).gather(1, j)


def search_int8(probes8, pscale, gallery8, scales, k, tile):
    b = probes8.shape[0]
    pad = max(32, (b + 7) // 8 * 8)  # _int_mm wants more than 16 rows, a multiple of 8
    a = torch.zeros((pad, probes8.shape[1]), dtype=torch.int8, device=probes8.device)
    a[:b] = probes8
    vals, idx = [], []
    for start in range(0, gallery8.shape[0], tile):
        # Row-major probes times the tile's rows transposed (a column-major
        # view): the "TN" layout cuBLASLt's int8 GEMM takes.
        acc = torch._int_mm(a, gallery8[start:start + tile].t())[:b]
        s = acc.float() * pscale[:, None] * scales[None, start:start + tile]
        v, i = s.topk(min(k, s.shape[1]), dim=1)
        vals.append(v)
        idx.append(i + start)
    v, j = torch.cat(vals, 1).topk(k, dim=1)
    return v, torch.cat(idx, 1).gather(1, j)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats):
    fn()
    sync()
    ms = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        ms.append((time.perf_counter() - t) * 1e3)
    return sorted(ms)[len(ms) // 2]


def bandwidth(dev, repeats):
    """The device's copy bandwidth (read + write) as CUDA moves it, beside
    facegate-gpu-bench's own measures of the same device."""
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), max(repeats, 10))
    print(f"torch copy of 1 GiB: {2 * n / ms / 1e6:.0f} GB/s (read + write)\n")


def gallery_sections(d):
    """The bench gallery's int8 rows (rows x dim), scales and row subjects,
    mapped from bench.fgal at the offsets gallery.json gives."""
    layout = json.load(open(f"{d}/gallery.json"))
    path, n, dim = f"{d}/{layout['file']}", layout["rows"], layout["dim"]
    scan = layout["scan_rows"]
    rows = np.memmap(path, np.int8, "r", scan["offset"], (n, scan["stride"]))[:, :dim]
    scales = np.memmap(path, np.float32, "r", layout["row_scales"]["offset"], (n,))
    subjects = np.memmap(path, np.uint32, "r", layout["row_subjects"]["offset"], (n,))
    return np.ascontiguousarray(rows), np.array(scales), np.array(subjects)


def subjects_of(rows, row_subjects, k):
    """Each probe's first k distinct subjects, in rank order."""
    out = []
    for r in rows:
        seen = []
        for s in row_subjects[r]:
            if s not in seen:
                seen.append(int(s))
            if len(seen) == k:
                break
        out.append(seen)
    return out


def main():
    a = args()
    d = a.dir
    dev = torch.device(a.device)
    name = torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {name}")
    rows8, scales32, row_subjects = gallery_sections(d)
    rows = torch.from_numpy(rows8).to(dev)
    scales = torch.from_numpy(scales32).to(dev)
    probes = torch.from_numpy(np.load(f"{d}/probes.npy")).to(dev)
    answers = np.load(f"{d}/answers.npy")
    gallery16 = (rows.to(torch.float16) * scales[:, None].to(torch.float16)).contiguous()
    gallery8 = rows
    k, k2 = a.top_k, 4 * a.top_k  # rows, enough for k distinct subjects of two rows each
    print(f"{gallery16.shape[0]} x {gallery16.shape[1]} rows, tiles of {a.tile_rows}, top-{k}")
    bandwidth(dev, a.repeats)
    print("| batch | f16 GEMM + topk ms | int8 _int_mm + topk ms |")
    print("|---:|---:|---:|")
    for b in [int(x) for x in a.batches.split(",")]:
        p32 = probes[:b]
        p16 = p32.half()
        p8, ps = quantise(p32)
        f16 = timed(lambda: search_f16(p16, gallery16, k2, a.tile_rows), a.repeats)
        i8 = timed(lambda: search_int8(p8, ps, gallery8, scales, k2, a.tile_rows), a.repeats)
        print(f"| {b} | {f16:.2f} | {i8:.2f} |")
    b = probes.shape[0]
    for name, (_, idx) in [
        ("f16", search_f16(probes.half(), gallery16, k2, a.tile_rows)),
        ("int8", search_int8(*quantise(probes), gallery8, scales, k2, a.tile_rows)),
    ]:
        theirs = subjects_of(idx.cpu().numpy(), row_subjects, k)
        ours = [[int(s) for s in row if s != 0xFFFFFFFF] for row in answers]
        top1 = sum(t[:1] == o[:1] for t, o in zip(theirs, ours)) / b
        recall = sum(len(set(t) & set(o)) for t, o in zip(theirs, ours)) / max(1, sum(len(o) for o in ours))
        print(f"\n{name} peer against facegate on {b} probes: same top-1 {top1:.3f}, top-{k} overlap {recall:.3f}")


if __name__ == "__main__":
    main()
