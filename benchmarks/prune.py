"""Pruning a map: what ``global-loc map prune`` costs and what the pruned map localizes.

``make demo``'s robot world (its mapping run: two laps, one each way; 215 keyframes) and its map;
the first lap pruned (the keyframes stamped before the middle of the run). Each map localizes one
frame in ``--every`` of the query run by global query (tracking off), with the map's preset and
with ``localization.max_rotation_std_deg`` set. Prints and saves ``benchmarks/results/prune.md``:
the time of the prune (read, prune, write; median of 3), the keyframes and points kept, the
queries localized, within (0.25 m, 2 deg), beyond (1 m, 10 deg), the median error, and the
largest rotation standard deviation among the right poses and the smallest among the wrong.

Run: ``.venv/bin/python benchmarks/prune.py [--world demo_out/world] [--every 5] [--gate 2]``.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def localize(map_path: Path, world: Path, every: int, overrides: list[str]) -> dict:
    from global_loc.evaluation import trajectory_errors
    from global_loc.io.text import read_tum
    from global_loc.localizer import Localizer, conf_for_map
    from global_loc.map.storage import read_map
    from global_loc.pipeline import localize_bag

    m = read_map(map_path)
    conf = conf_for_map(m, overrides=overrides)
    conf.tracking.enabled = False
    run = localize_bag(Localizer(m, conf), world / "query_mcap", "/camera/image_raw", every=every)
    pubs = run.publications
    est = [(p.stamp_ns * 1e-9, p.map_from_cam) for p in pubs if p.localized]
    err = np.array(list(trajectory_errors(est, read_tum(world / "query_ground_truth_camera.tum"),
                                          [p.stamp_ns * 1e-9 for p in pubs]).values()))
    rot_std = np.array([np.degrees(np.sqrt(np.diag(p.result.covariance)[:3]).max())
                        if p.localized and p.result.covariance is not None else np.nan for p in pubs])
    right = (err[:, 0] < 0.25) & (err[:, 1] < 2.0)
    wrong = np.isfinite(err[:, 0]) & ((err[:, 0] >= 1.0) | (err[:, 1] >= 10.0))
    fin = err[np.isfinite(err[:, 0])]
    return {"queries": len(pubs), "localized": len(fin), "right": int(right.sum()), "wrong": int(wrong.sum()),
            "median_mm": 1e3 * float(np.median(fin[:, 0])) if len(fin) else np.nan,
            "median_deg": float(np.median(fin[:, 1])) if len(fin) else np.nan,
            "max_right_std": float(np.nanmax(rot_std[right])) if right.any() else np.nan,
            "min_wrong_std": float(np.nanmin(rot_std[wrong])) if wrong.any() else np.nan}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, default=ROOT / "demo_out" / "world")
    ap.add_argument("--map", type=Path, default=ROOT / "demo_out" / "map.glmap")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--gate", type=float, default=2.0, help="localization.max_rotation_std_deg of the gated rows")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prune.md")
    args = ap.parse_args()
    from global_loc.benchmarking import ensure_robot_world
    from global_loc.map.edit import prune_keyframes, select_keyframes
    from global_loc.map.storage import read_map, write_map

    ensure_robot_world(args.world, args.map, args.data)
    with tempfile.TemporaryDirectory() as tmp:
        pruned_path = Path(tmp) / "pruned.glmap"
        times = []
        for _ in range(3):
            t = time.perf_counter()
            m = read_map(args.map)
            stamps = np.asarray(m.stamps)
            middle = float(stamps.min() + (stamps.max() - stamps.min()) / 2)
            pruned, stats = prune_keyframes(m, select_keyframes(m, before=middle))
            write_map(pruned, pruned_path)
            times.append(time.perf_counter() - t)
        lines = [f"# Pruning: `python benchmarks/prune.py --every {args.every} --gate {args.gate:g}`, "
                 f"{time.strftime('%Y-%m-%d')}, {platform.node() or 'this machine'}", "",
                 f"make demo's map ({m.num_keyframes} keyframes, {m.num_points3D} points, "
                 f"{args.map.stat().st_size / 2**20:.1f} MiB); the first lap pruned (stamps before {middle:.1f}): "
                 f"{stats.format_text()}; read, prune and write: median {1e3 * np.median(times):.0f} ms of 3.", "",
                 "| map | gate | localized | within (0.25 m, 2 deg) | beyond (1 m, 10 deg) | median (mm / deg) "
                 "| largest rotation std of a right pose (deg) | smallest of a wrong one (deg) |",
                 "|---|---|---:|---:|---:|---:|---:|---:|"]
        for name, path in (("intact", args.map), ("first lap pruned", pruned_path)):
            for gate in (None, args.gate):
                r = localize(path, args.world, args.every,
                             [] if gate is None else [f"localization.max_rotation_std_deg={gate}"])
                lines.append(f"| {name} | {'none' if gate is None else f'{gate:g} deg'} | {r['localized']}/{r['queries']} "
                             f"| {r['right']} | {r['wrong']} | {r['median_mm']:.1f} / {r['median_deg']:.3f} "
                             f"| {r['max_right_std']:.2f} | {r['min_wrong_std']:.2f} |")
                print(lines[-1], flush=True)
    from global_loc.benchmarking import write_table

    write_table(lines, args.out)


if __name__ == "__main__":
    main()
