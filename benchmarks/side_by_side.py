#!/usr/bin/env python3
"""Localizer processes alone and side by side: the temple's global queries in one process, and
in two processes at once on the same cores, for several settings, in one run.

    python benchmarks/side_by_side.py [--data ../shared/data] [--rounds 3] [--reps 2]
        [--variant NAME=SECTION.KEY=VALUE,...]

A robot runs the localizer next to other nodes, and one machine may serve two cameras, so a
setting that speeds up one process alone must not slow two down. Each variant runs, in fresh
processes, ``--rounds`` rounds of the 24 temple queries (odd views; the map of the even views is
built once and written to a temporary file), first one process alone, then two started together
(each waits until both have loaded the map and warmed up). Variants alternate, ``--reps``
times. Printed: per-query p50 of each process, the median over repetitions, and the wall time.

The default variants: ``default`` (matching shared by a thread per core, malloc thresholds
kept), each of the two undone (``malloc_trim_threshold_mib=0``: glibc's adaptive thresholds;
``matching.threads=1``), and both undone (``before``). The minor page faults per query of each
lone process are printed too. Prints markdown and writes
``benchmarks/results/side_by_side.md`` (figures in ``side_by_side.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VARIANTS = [
    "default=",
    "glibc's malloc thresholds=malloc_trim_threshold_mib=0",
    "one matching thread=matching.threads=1",
    "before=matching.threads=1,malloc_trim_threshold_mib=0",
]

CHILD = r"""
import json, resource, sys, time
import numpy as np
from pathlib import Path
from global_loc.config import load_preset
from global_loc.io.images import read_image
from global_loc.io.text import read_cameras
from global_loc.localizer import Localizer
from global_loc.map.storage import read_map

map_path, data, rounds, overrides = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
loc = Localizer(read_map(map_path), load_preset("sift", overrides))
cameras = read_cameras(data / "cameras.txt")
queries = sorted(n for n in cameras if int(n[7:11]) % 2 == 1)
images = {n: read_image(data / "images" / n) for n in queries}
for n in queries[:4]:
    loc.localize(images[n], cameras[n])
print("ready", flush=True)
sys.stdin.readline()
times, localized = [], 0
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t0 = time.perf_counter()
for _ in range(rounds):
    for n in queries:
        res = loc.localize(images[n], cameras[n])
        times.append(res.timings["total"])
        localized += res.success
print(json.dumps({"p50_ms": float(np.median(times)) * 1e3, "wall_s": time.perf_counter() - t0,
                  "localized": localized, "queries": len(times),
                  "faults_per_query": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / len(times)}),
      flush=True)
"""


def _run(map_path: Path, data: Path, rounds: int, overrides: list[str], processes: int) -> list[dict]:
    cmd = [sys.executable, "-c", CHILD, str(map_path), str(data), str(rounds), *overrides]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
             for _ in range(processes)]
    try:
        for p in procs:
            line = p.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a localizer process did not start: {line!r}")
        for p in procs:  # start together
            p.stdin.write("\n")
            p.stdin.flush()
        out = [json.loads(p.stdout.readline()) for p in procs]
    finally:
        for p in procs:
            p.wait(timeout=600)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the 24 queries per process")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of every variant, alternated")
    ap.add_argument("--variant", action="append", metavar="NAME=SECTION.KEY=VALUE,...",
                    help=f"a setting to run (repeatable; default: {DEFAULT_VARIANTS})")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from global_loc.config import load_preset
    from global_loc.io.text import read_cameras, read_poses
    from global_loc.map.storage import write_map
    from global_loc.pipeline import index_image_folder

    variants = {}
    for v in args.variant or DEFAULT_VARIANTS:
        name, _, overrides = v.partition("=")
        variants[name] = [o for o in overrides.split(",") if o]
    root = args.data / "temple_ring"
    poses = read_poses(root / "poses_cam_from_world.txt")
    map_poses = {n: p for n, p in poses.items() if int(n[7:11]) % 2 == 0}
    results = {name: {1: [], 2: []} for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        map_path = Path(tmp) / "temple.glmap"
        write_map(index_image_folder(root / "images", map_poses, read_cameras(root / "cameras.txt"),
                                     load_preset("sift")), map_path)
        for rep in range(args.reps):
            for name, overrides in variants.items():
                for k in (1, 2):
                    out = _run(map_path, root, args.rounds, overrides, k)
                    results[name][k].append(out)
                    print(f"rep {rep} {name} x{k}: " + "; ".join(
                        f"p50 {o['p50_ms']:.1f} ms, wall {o['wall_s']:.1f} s, {o['localized']}/{o['queries']}, "
                        f"{o['faults_per_query']:.0f} page faults per query"
                        for o in out), flush=True)
    res = {"machine": f"{platform.node() or 'this machine'}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
           "rounds": args.rounds, "reps": args.reps, "variants": variants, "runs": results}
    lines = [f"Localizer processes alone and side by side on {res['machine']}; `python benchmarks/side_by_side.py`, "
             f"{res['date']}", "",
             f"Temple global queries (24 odd views x {args.rounds} rounds per process, map of the even views), "
             f"default preset; each figure the median over {args.reps} alternated repetitions.", "",
             "| variant | overrides | alone: query p50 | two side by side: query p50 (each) | alone: wall | "
             "side by side: wall | minor page faults per query (alone) | localized |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, runs in results.items():
        alone = np.median([r[0]["p50_ms"] for r in runs[1]])
        pair = np.median([o["p50_ms"] for r in runs[2] for o in r])
        alone_wall = np.median([r[0]["wall_s"] for r in runs[1]])
        pair_wall = np.median([o["wall_s"] for r in runs[2] for o in r])
        ok = sum(o["localized"] for k in (1, 2) for r in runs[k] for o in r)
        total = sum(o["queries"] for k in (1, 2) for r in runs[k] for o in r)
        faults = np.median([r[0]["faults_per_query"] for r in runs[1]])
        lines.append(f"| {name} | `{' '.join(variants[name]) or '-'}` | {alone:.1f} ms | {pair:.1f} ms | "
                     f"{alone_wall:.1f} s | {pair_wall:.1f} s | {faults:,.0f} | {ok}/{total} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "side_by_side.md").write_text(text)
    (args.out / "side_by_side.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
