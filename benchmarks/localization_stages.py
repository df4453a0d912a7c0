#!/usr/bin/env python3
"""Time each localization stage on the temple-ring queries and measure peak memory.

The map (even views) is built in a child process, so that the memory of map building does
not hide the localizer's; this process then loads the map, warms up on a few queries, and
localizes every odd view, reporting the median and 90th percentile of each stage and the
peak resident memory. The table is printed and saved under ``benchmarks/results/``.

    python benchmarks/localization_stages.py [--data ../shared/data] [--preset sift] [--repeat 3]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """Current resident set size, MiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--preset", default="sift")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the 24 queries")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    temple = args.data / "temple_ring"
    if not temple.is_dir():
        print(f"error: {temple} not found; pass --data", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gl_bench_"))
    lines = (temple / "poses_cam_from_world.txt").read_text().splitlines()
    cams = (temple / "cameras.txt").read_text().splitlines()
    num = lambda l: int(l.split()[0][7:11])  # noqa: E731
    (work / "map_poses.txt").write_text("\n".join(l for l in lines if num(l) % 2 == 0) + "\n")
    (work / "queries.txt").write_text("\n".join(l for l in cams if num(l) % 2 == 1) + "\n")
    map_path = work / "temple.glmap"
    subprocess.run(
        [sys.executable, "-m", "global_loc.cli.main", "-q", "index", "--images", str(temple / "images"),
         "--poses", str(work / "map_poses.txt"), "--cameras", str(temple / "cameras.txt"),
         "--out", str(map_path), "--preset", args.preset],
        check=True,
    )

    import cv2
    import faiss
    import numpy as np
    import pycolmap

    import global_loc
    from global_loc.evaluation import format_timing_table, timing_table
    from global_loc.geometry.transforms import pose_error
    from global_loc.io.images import read_image
    from global_loc.io.text import read_cameras, read_poses
    from global_loc.localizer import STAGES, Localizer
    from global_loc.map.storage import read_map

    rss_start = rss_mib()
    import time

    t = time.perf_counter()
    map_index = read_map(map_path)
    load_s = time.perf_counter() - t
    localizer = Localizer(map_index)
    rss_loaded = rss_mib()
    queries = read_cameras(work / "queries.txt")
    gt = read_poses(temple / "poses_cam_from_world.txt")
    names = list(queries)

    def run_one(name):
        t0 = time.perf_counter()
        image = read_image(temple / "images" / name)
        return localizer.localize(image, queries[name], timings={"decode": time.perf_counter() - t0})

    for name in names[: args.warmup]:
        run_one(name)
    timings, errors = [], []
    for _ in range(args.repeat):
        for name in names:
            r = run_one(name)
            timings.append(r.timings)
            if r.success:
                errors.append(pose_error(r.cam_from_world, gt[name]))
    peak = peak_rss_mib()
    table = timing_table(timings, STAGES)

    header = {
        "date": datetime.date.today().isoformat(),
        "host": f"{cpu_name()}, {os.cpu_count()} logical CPUs, no GPU used",
        "python": platform.python_version(),
        "global_loc": global_loc.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "faiss": faiss.__version__,
        "pycolmap": pycolmap.__version__,
        "preset": args.preset,
        "map": map_index.summary(),
        "queries": f"{len(names)} odd temple views x {args.repeat} passes (after {args.warmup} warm-up)",
    }
    e = np.array(errors)
    memory = {
        "rss_before_map_mib": round(rss_start, 1),
        "rss_after_map_load_mib": round(rss_loaded, 1),
        "peak_rss_mib": round(peak, 1),
        "map_load_ms": round(load_s * 1e3, 1),
        "map_file_mib": round(map_path.stat().st_size / 2**20, 2),
    }
    md = ["# Localization stages, temple ring", ""]
    md += [f"- {k}: {v}" for k, v in header.items()]
    md += ["", format_timing_table(table), ""]
    md += [f"- {k}: {v}" for k, v in memory.items()]
    md += [f"- localized: {len(e)} of {len(timings)}; median error {np.median(e[:, 0]) * 1e3:.3f} mm, "
           f"{np.median(e[:, 1]):.4f} deg" if len(e) else "- localized: 0"]
    text = "\n".join(md)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"localization_stages_{args.preset}"
    (args.out / f"{stem}.md").write_text(text + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps(
        {"header": header, "stages": table, "memory": memory}, indent=1))
    print(f"\nsaved {args.out / stem}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
