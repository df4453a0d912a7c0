#!/usr/bin/env python3
"""``global-loc time-query`` for several presets on the temple ring (maps from the even views,
the odd views timed), on every backend available here; one markdown file per run.

    python benchmarks/time_query_presets.py [--presets sift aliked-n16 r2d2 xfeat] [--weights DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--weights", type=Path, default=ROOT.parent / "shared" / "weights")
    ap.add_argument("--presets", nargs="+", default=["sift", "aliked-n16", "r2d2", "xfeat"])
    ap.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-num-queries", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    from global_loc.benchmarking import format_header, run_time_query

    temple = args.data / "temple_ring"
    work = Path(tempfile.mkdtemp(prefix="gl_tq_"))
    lines = (temple / "poses_cam_from_world.txt").read_text().splitlines()
    cams = (temple / "cameras.txt").read_text().splitlines()
    num = lambda l: int(l.split()[0][7:11])  # noqa: E731
    (work / "map_poses.txt").write_text("\n".join(l for l in lines if num(l) % 2 == 0) + "\n")
    (work / "queries.txt").write_text("\n".join(l for l in cams if num(l) % 2 == 1) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    for preset in args.presets:
        map_path = work / f"{preset}.glmap"
        subprocess.run([sys.executable, "-m", "global_loc.cli.main", "-q", "index", "--images", str(temple / "images"),
                        "--poses", str(work / "map_poses.txt"), "--cameras", str(temple / "cameras.txt"),
                        "--preset", preset, "--models-dir", str(args.weights), "--device", args.device,
                        "--out", str(map_path)], check=True)
        backends = ["-"] if preset == "sift" else ["onnxruntime"] if preset == "xfeat" else args.backends
        for backend in backends:
            report = run_time_query(map_path, temple / "images", work / "queries.txt", preset, (), args.weights,
                                    args.device, None if backend == "-" else backend, args.max_num_queries)
            text = "\n".join([f"# time-query: {preset}" + (f", {backend}" if backend != "-" else ""), "",
                              "```", format_header(report["header"]), "```", "", report["table_markdown"], "",
                              f"- peak memory: host {report['memory']['peak_rss_mib']:.0f} MiB"
                              + (f", GPU {report['memory']['gpu_peak_mib']:.0f} MiB" if "gpu_peak_mib" in report["memory"] else ""),
                              f"- localized {report['localized']} of {report['timed']}"])
            print(text, flush=True)
            dev = report["header"]["device"].split(":")[0]
            tag = f"{preset}_{backend}" if backend != "-" else preset
            (args.out / f"time_query_{tag}_{dev}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
