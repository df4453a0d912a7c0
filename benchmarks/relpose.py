"""Pose from retrieved neighbours (``localized_relative``, :mod:`global_loc.relpose`).

Prints and saves (``benchmarks/results/relpose.md`` and ``.json``), in one run:

- temple and dino (even views map, odd views query; default preset ``sift``), with the maps'
  3D points removed (keyframes and all their features only, ``MapIndex.without_points`` of a
  map built with ``mapping.store_free_features``): localized, within (1 cm, 1 deg) and
  (5 cm, 5 deg), median error, the covariances' consistency (share inside their 2-sigma bound,
  largest error in sigmas), and time per query, next to PnP on the full map;
- the same maps without their free keypoints (the observations only, what a default map keeps);
- the robot world's query run against its default map (global queries only): how many frames
  the fallback localizes that PnP did not, and their errors against (0.25 m, 2 deg) and
  (0.5 m, 5 deg).

Run: ``.venv/bin/python benchmarks/relpose.py [--data ../shared/data] [--skip robot]``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from global_loc.config import load_preset
from global_loc.evaluation import SIGMA_LEVELS, consistency, mahalanobis_distance
from global_loc.geometry.transforms import pose_error
from global_loc.io.images import read_image
from global_loc.io.text import read_cameras, read_poses
from global_loc.localizer import Localizer
from global_loc.pipeline import index_image_folder

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"


def _run(m, conf, images: Path, queries: dict, gt: dict) -> list[dict]:
    loc = Localizer(m, conf)
    out = []
    for name, cam in queries.items():
        img = read_image(images / name)
        t = time.perf_counter()
        r = loc.localize(img, cam)
        ms = (time.perf_counter() - t) * 1e3
        row = {"name": name, "status": r.status.value, "ms": ms, "reason": r.reason}
        if r.success:
            row["err_m"], row["err_deg"] = pose_error(r.cam_from_world, gt[name])
            cov = r.covariance
            row["sigmas"] = (mahalanobis_distance(r.cam_from_world, gt[name], cov) if cov is not None
                             else float("inf"))
        out.append(row)
    return out


def _summary(rows: list[dict], bounds=((0.01, 1.0), (0.05, 5.0))) -> dict:
    ok = [r for r in rows if "err_m" in r]
    e = np.array([(r["err_m"], r["err_deg"]) for r in ok]).reshape(-1, 2)
    s = np.array([r["sigmas"] for r in ok])
    out = {"queries": len(rows), "localized": len(ok),
           "relative": sum(r["status"] == "localized_relative" for r in rows),
           "time_ms_p50": round(float(np.median([r["ms"] for r in rows])), 1)}
    for b in bounds:
        out[f"within_{b[0]:g}m_{b[1]:g}deg"] = round(
            float(np.sum((e[:, 0] <= b[0]) & (e[:, 1] <= b[1]))) / max(len(rows), 1), 4)
        out[f"localized_outside_{b[0]:g}m_{b[1]:g}deg"] = int(np.sum((e[:, 0] > b[0]) | (e[:, 1] > b[1])))
    if len(e):
        out["median_m"] = float(np.median(e[:, 0]))
        out["median_deg"] = float(np.median(e[:, 1]))
        c = consistency(s)  # 6-dof chi-square bounds, as `global-loc evaluate`
        out["within_2sigma"] = round(c["within"][SIGMA_LEVELS[1]], 4)
        out["max_sigmas"] = round(c["max_sigmas"], 2)
    return out


def ring(data: Path, dataset: str) -> list[dict]:
    root = data / {"temple": "temple_ring", "dino": "dino_subset"}[dataset]
    prefix = {"temple": "templeR", "dino": "dino"}[dataset]
    poses = read_poses(root / "poses_cam_from_world.txt")
    cams = read_cameras(root / "cameras.txt")
    number = {n: int(n[len(prefix):len(prefix) + 4]) for n in poses}
    map_poses = {n: p for n, p in poses.items() if number[n] % 2 == 0}
    queries = {n: c for n, c in cams.items() if number[n] % 2 == 1}
    conf = load_preset("sift", ["mapping.store_free_features=true"])
    m = index_image_folder(root / "images", map_poses, cams, conf)
    rows = []
    for label, mm in (("PnP, full map (relpose as fallback)", m),
                      ("relative, points removed, all features", m.without_points()),
                      ("relative, points removed, observations only", _observations_only(m).without_points())):
        s = _summary(_run(mm, conf, root / "images", queries, poses))
        s.update(dataset=dataset, map=label, keyframes=mm.num_keyframes, points=mm.num_points3D,
                 features=mm.num_observations + mm.num_free_features)
        print(json.dumps(s), flush=True)
        rows.append(s)
    return rows


def _observations_only(m):
    """``m`` without its free keypoints: what a map built by default keeps."""
    import copy

    out = copy.copy(m)
    out.free_offsets = np.zeros(m.num_keyframes + 1, np.int64)
    out.free_keypoints = np.zeros((0, 2), np.float32)
    out.free_descriptors = m.obs_descriptors[:0]
    return out


def robot(data: Path, world_dir: Path, map_path: Path) -> list[dict]:
    """The robot world's query run (global queries only) against its default map (no free
    keypoints), and against that map without its 3D points."""
    from global_loc.benchmarking import ensure_robot_world
    from global_loc.evaluation import trajectory_errors
    from global_loc.io.text import read_tum
    from global_loc.localizer import conf_for_map
    from global_loc.map.storage import read_map
    from global_loc.pipeline import localize_bag

    ensure_robot_world(world_dir, map_path, data)
    m = read_map(map_path)
    gt = read_tum(world_dir / "query_ground_truth_camera.tum")
    rows = []
    conf = conf_for_map(m, overrides=["tracking.enabled=false"])
    for label, mm in (("default map, global queries (relpose as fallback)", m),
                      ("points removed, observations only", m.without_points())):
        run = localize_bag(Localizer(mm, conf), world_dir / "query_mcap", "/camera/image_raw")
        pubs = run.publications
        stamps = [p.stamp_ns * 1e-9 for p in pubs]
        est = [(p.stamp_ns * 1e-9, p.map_from_cam) for p in pubs if p.localized]
        err = trajectory_errors(est, gt, stamps)
        rel = [p for p in pubs if p.result.status.value == "localized_relative"]
        e_rel = np.array([err[f"{p.stamp_ns * 1e-9:.9f}"] for p in rel]).reshape(-1, 2)
        e_all = np.array(list(err.values()))
        gt_t = np.array([t for t, _ in gt])

        def truth(stamp_ns):  # cam_from_world of the ground truth nearest in time
            return gt[int(np.argmin(np.abs(gt_t - stamp_ns * 1e-9)))][1].inverse()

        sig = [mahalanobis_distance(p.result.cam_from_world, truth(p.stamp_ns), p.result.covariance)
               for p in rel if p.result.covariance is not None]
        s = {"dataset": "robot world", "map": label,
             "queries": len(pubs), "localized": len(est), "relative": len(rel),
             "recall_0.25m_2deg": round(float(np.mean((e_all[:, 0] <= 0.25) & (e_all[:, 1] <= 2.0))), 4),
             "relative_within_0.25m_2deg": int(np.sum((e_rel[:, 0] <= 0.25) & (e_rel[:, 1] <= 2.0))),
             "relative_outside_0.5m_5deg": int(np.sum((e_rel[:, 0] > 0.5) | (e_rel[:, 1] > 5.0))),
             "relative_median_m": float(np.median(e_rel[:, 0])) if len(e_rel) else None,
             "relative_median_deg": float(np.median(e_rel[:, 1])) if len(e_rel) else None,
             "relative_worst_m": float(np.max(e_rel[:, 0])) if len(e_rel) else None,
             "relative_worst_deg": float(np.max(e_rel[:, 1])) if len(e_rel) else None,
             "relative_within_2sigma": round(consistency(sig)["within"][SIGMA_LEVELS[1]], 4) if sig else None,
             "relative_max_sigmas": round(consistency(sig)["max_sigmas"], 2) if sig else None,
             "time_ms_p50": round(float(np.median([p.result.timings["total"] for p in pubs])) * 1e3, 1),
             "relative_time_ms_p50": round(float(np.median([p.result.timings["relative_pose"] for p in rel])) * 1e3, 1)
             if rel else None}
        print(json.dumps(s), flush=True)
        rows.append(s)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--skip", nargs="*", default=[], choices=["temple", "dino", "robot"])
    ap.add_argument("--world", type=Path, default=ROOT.parent / "demo_out" / "world")
    ap.add_argument("--map", type=Path, default=ROOT.parent / "demo_out" / "map.glmap")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "relpose")
    args = ap.parse_args()
    rows = []
    for ds in ("temple", "dino"):
        if ds not in args.skip:
            rows += ring(args.data, ds)
    if "robot" not in args.skip:
        rows += robot(args.data, args.world, args.map)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    md = _markdown(rows)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    print(f"saved {args.out.with_suffix('.json')} and .md")


def _markdown(rows: list[dict]) -> str:
    lines = ["# Pose from retrieved neighbours (`benchmarks/relpose.py`)", "",
             "Default preset (`sift`, VLAD), 2 CPU cores. Temple and dino: even views map, odd views query; "
             "their maps built with `mapping.store_free_features=true`. Time: whole query, median.", "",
             "| data | map | localized (relative) | within (1 cm, 1 deg) | within (5 cm, 5 deg) | median error | "
             "inside 2 sigma | worst | ms p50 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["dataset"] == "robot world":
            continue
        lines.append(
            f"| {r['dataset']} | {r['map']} ({r['points']} points, {r['features']} features) | "
            f"{r['localized']}/{r['queries']} ({r['relative']}) | {100 * r['within_0.01m_1deg']:.0f} % | "
            f"{100 * r['within_0.05m_5deg']:.0f} % | "
            + (f"{1e3 * r['median_m']:.2f} mm, {r['median_deg']:.3f} deg | {100 * r['within_2sigma']:.0f} % | "
               f"{r['max_sigmas']:.1f} sigma" if "median_m" in r else "- | - | -")
            + f" | {r['time_ms_p50']:.0f} |")
    robot = [r for r in rows if r["dataset"] == "robot world"]
    if robot:
        lines += ["", "Robot world query run (300 frames, global queries only, no tracking):", "",
                  "| map | localized | of them relative | relative within (0.25 m, 2 deg) | relative outside "
                  "(0.5 m, 5 deg) | relative median, worst | inside 2 sigma | worst | ms p50 (relative) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in robot:
            med = (f"{1e3 * r['relative_median_m']:.1f} mm / {r['relative_median_deg']:.2f} deg, "
                   f"{1e3 * r['relative_worst_m']:.0f} mm / {r['relative_worst_deg']:.2f} deg"
                   if r["relative"] else "-")
            cons = (f"{100 * r['relative_within_2sigma']:.0f} % | {r['relative_max_sigmas']:.1f} sigma"
                    if r["relative_within_2sigma"] is not None else "- | -")
            lines.append(f"| {r['map']} | {r['localized']}/{r['queries']} | {r['relative']} | "
                         f"{r['relative_within_0.25m_2deg']} | {r['relative_outside_0.5m_5deg']} | {med} | {cons} | "
                         f"{r['time_ms_p50']:.0f} ({r['relative_time_ms_p50'] or '-'}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
