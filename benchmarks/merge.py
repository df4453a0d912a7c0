"""Merging two maps of one place: what ``global-loc map merge`` costs, how well it aligns, what
the merged map localizes.

``make demo``'s robot world: its map (the mapping run: two laps, one each way) cut in two at
the middle of the run with ``map prune``: A = the first lap, B = the second lap moved by a
known rigid transform (30 deg about z, (4, -3, 0.5) m: another session's odometry frame). B is
merged into A with ``--rigid`` (the maps are metric) and as a similarity. Prints and saves
``benchmarks/results/merge.md``: the alignment (keyframes of B localized in A, agreeing,
residuals), its error against the known transform (B's keyframe centres and orientations in
the merged map against the same keyframes of the intact map), the time of the merge (align and
add), and one frame in ``--every`` of the query run localized by global query (tracking off)
against A alone, B alone (moved back), the merged maps and the intact map (both laps built at
once).

Run: ``.venv/bin/python benchmarks/merge.py [--world demo_out/world] [--every 5]``.
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
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, default=ROOT / "demo_out" / "world")
    ap.add_argument("--map", type=Path, default=ROOT / "demo_out" / "map.glmap")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "merge.md")
    args = ap.parse_args()
    from prune import localize

    from global_loc.benchmarking import ensure_robot_world
    from global_loc.geometry.transforms import rotation_angle_deg
    from global_loc.map.edit import prune_keyframes, select_keyframes
    from global_loc.map.merge import Similarity, align_maps, merge_maps, transform_map
    from global_loc.map.storage import read_map, write_map

    ensure_robot_world(args.world, args.map, args.data)
    full = read_map(args.map)
    stamps = np.asarray(full.stamps)
    middle = float(stamps.min() + (stamps.max() - stamps.min()) / 2)
    first = select_keyframes(full, before=middle)
    a, _ = prune_keyframes(full, np.setdiff1d(np.arange(full.num_keyframes), first))
    b_truth, _ = prune_keyframes(full, first)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    b_from_truth = Similarity(1.0, np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]), np.array([4.0, -3.0, 0.5]))
    b = transform_map(b_truth, b_from_truth)
    lines = [f"# Merging: `python benchmarks/merge.py --every {args.every}`, {time.strftime('%Y-%m-%d')}, "
             f"{platform.node() or 'this machine'}", "",
             f"make demo's map ({full.num_keyframes} keyframes) cut at the middle of the run (stamp {middle:.1f}): A "
             f"the first lap ({a.num_keyframes} keyframes, {a.num_points3D} points), B the second "
             f"({b.num_keyframes} keyframes, {b.num_points3D} points) moved by 30 deg about z and (4, -3, 0.5) m.", "",
             "| merge | B's keyframes localized in A | agreeing | residuals median / max (mm, deg) | B in the merged map "
             "against the intact map, median / max (mm, deg) | scale | align (s) | add (s) |",
             "|---|---:|---:|---|---|---:|---:|---:|"]
    merged_paths = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, rigid in (("rigid", True), ("similarity", False)):
            t0 = time.perf_counter()
            alignment = align_maps(a, b, rigid=rigid)
            t1 = time.perf_counter()
            merged = merge_maps(a, b, alignment)
            t2 = time.perf_counter()
            d = alignment.to_dict()
            errs = np.array([(np.linalg.norm(merged.cam_from_world(merged.row_of(n)).center
                                             - full.cam_from_world(full.row_of(n)).center),
                              rotation_angle_deg(merged.cam_from_world(merged.row_of(n)).R
                                                 @ full.cam_from_world(full.row_of(n)).R.T)) for n in b.names])
            lines.append(f"| {name} | {d['localized']}/{d['tried']} | {d['agreeing']} | "
                         f"{1e3 * d['median_residual_m']:.1f} / {1e3 * d['max_residual_m']:.1f}, "
                         f"{d['median_residual_deg']:.3f} / {d['max_residual_deg']:.3f} | "
                         f"{1e3 * np.median(errs[:, 0]):.1f} / {1e3 * errs[:, 0].max():.1f}, "
                         f"{np.median(errs[:, 1]):.3f} / {errs[:, 1].max():.3f} | {d['scale']:.5f} | {t1 - t0:.1f} | "
                         f"{t2 - t1:.1f} |")
            print(lines[-1], flush=True)
            merged_paths[f"merged ({name})"] = tmp / f"merged_{name}.glmap"
            write_map(merged, merged_paths[f"merged ({name})"])
        write_map(a, tmp / "a.glmap")
        write_map(transform_map(b, b_from_truth.inverse()), tmp / "b.glmap")
        lines += ["", f"One frame in {args.every} of the query run, global query, tracking off:", "",
                  "| map | keyframes | localized | within (0.25 m, 2 deg) | beyond (1 m, 10 deg) | median (mm / deg) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, path in (("A (first lap)", tmp / "a.glmap"), ("B (second lap, moved back)", tmp / "b.glmap"),
                           *merged_paths.items(), ("intact (both laps at once)", args.map)):
            r = localize(path, args.world, args.every, [])
            lines.append(f"| {name} | {read_map(path).num_keyframes} | {r['localized']}/{r['queries']} | {r['right']} "
                         f"| {r['wrong']} | {r['median_mm']:.1f} / {r['median_deg']:.3f} |")
            print(lines[-1], flush=True)
    from global_loc.benchmarking import write_table

    write_table(lines, args.out)


if __name__ == "__main__":
    main()
