"""PnP near its floor: one refinement against two, on the same 2D-3D matches, in one run.

The localizer's PnP inputs (matches, points, their covariances) are recorded while the default
preset localizes each set's queries (global queries only); then each recorded problem is solved
by

- **before**: pycolmap's ``estimate_and_refine_absolute_pose`` (RANSAC, COLMAP's refinement and
  its covariance), then the weighted refinement from that pose and the points' share of the
  covariance (the code before this change, kept here);
- **after**: ``global_loc.geometry.pnp.estimate_absolute_pose`` (RANSAC, then one refinement:
  the weighted one; COLMAP's covariance formula at the refined pose),

alternated problem by problem. Printed and saved (``benchmarks/results/pnp.md``): PnP time per
place (median, p90), the floor (pycolmap's RANSAC alone, same problems), and for the accepted
place of each query the pose error against the ground truth (median, worst, within the set's
bound) and the published covariance's consistency (share of errors inside the 2-sigma bound of
chi-square(6), the worst in sigmas).

Sets: temple ring and the dino subset (even views map, odd views query), the robot world's query run
(``make demo``'s world; made in ``--world`` when missing).

Run: ``.venv/bin/python benchmarks/pnp.py [--data ../shared/data] [--world /tmp/global_loc_world]``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pycolmap

import global_loc.localizer as localizer_module
from global_loc.config import load_preset
from global_loc.evaluation import SIGMA_LEVELS, consistency, mahalanobis_distance
from global_loc.geometry.covariance import map_point_pose_covariance
from global_loc.geometry.pnp import estimate_absolute_pose, refine_with_point_uncertainty
from global_loc.geometry.transforms import Pose, pose_error

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"


def before(keypoints, points3D, camera, max_error_px, max_iterations, seed, covariance_scale,
           point_covariances=None, point_noise_px=1.0, weigh_points=True, **_):
    """The PnP of the previous version: COLMAP's refinement and covariance, then the weighted
    refinement from its pose. Returns ``(cam_from_world, covariance, inliers)`` or None."""
    kp = np.asarray(keypoints, np.float64)
    X = np.asarray(points3D, np.float64)
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error, est.ransac.max_num_trials, est.ransac.random_seed = (
        float(max_error_px), int(max_iterations), int(seed))
    ret = pycolmap.estimate_and_refine_absolute_pose(camera.to_colmap_pixels(kp), X, camera.to_pycolmap(), est,
                                                     pycolmap.AbsolutePoseRefinementOptions(), return_covariance=True)
    if ret is None:
        return None
    pose = Pose.from_pycolmap(ret["cam_from_world"])
    inl = np.asarray(ret["inlier_mask"], bool)
    res = camera.project(pose.transform(X[inl])) - kp[inl]
    sigma2 = float(np.nansum(res**2) / max(2 * int(inl.sum()) - 6, 1))
    S = np.diag([2.0, 2.0, 2.0, 1.0, 1.0, 1.0])
    cov = S @ np.asarray(ret["covariance"], np.float64) @ S * sigma2
    if point_covariances is not None:
        C = np.asarray(point_covariances)[inl]
        extra = map_point_pose_covariance(camera, pose, X[inl], C)
        cov = cov + extra if extra is not None else cov
        refined = (refine_with_point_uncertainty(camera, pose, kp[inl], X[inl], C, point_noise_px)
                   if weigh_points else None)
        pose = refined if refined is not None else pose
    return pose, cov * covariance_scale, inl


def floor(keypoints, points3D, camera, max_error_px, max_iterations, seed, *_, **__):
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error, est.ransac.max_num_trials, est.ransac.random_seed = (
        float(max_error_px), int(max_iterations), int(seed))
    return pycolmap.estimate_absolute_pose(camera.to_colmap_pixels(np.asarray(keypoints, np.float64)),
                                           np.asarray(points3D, np.float64), camera.to_pycolmap(), est)


def record(loc, queries):
    """Localize ``queries`` (``(name, image, camera)``) and record every PnP problem:
    ``[(name, args, kwargs, accepted)]``, accepted: the place whose pose the query published."""
    problems, current = [], {}
    real = localizer_module.estimate_absolute_pose

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        problems.append([current["name"], args, kwargs, out])
        return out

    localizer_module.estimate_absolute_pose = spy
    accepted = {}
    try:
        for name, image, camera in queries:
            current["name"] = name
            r = loc.localize(image, camera)
            if r.success:
                accepted[name] = r.cam_from_world
    finally:
        localizer_module.estimate_absolute_pose = real
    out = []
    for name, args, kwargs, result in problems:
        chosen = (name in accepted and result is not None
                  and np.allclose(result.cam_from_world.t, accepted[name].t, atol=1e-9))
        out.append((name, args, kwargs, chosen))
    return out


def compare(problems, truth: dict, bound: tuple[float, float]) -> dict:
    times = {"before": [], "after": [], "floor": []}
    errors = {"before": [], "after": []}
    sigmas = {"before": [], "after": []}
    for k, (name, args, kwargs, chosen) in enumerate(problems):
        order = ("before", "after") if k % 2 == 0 else ("after", "before")
        for which in order:
            t = time.perf_counter()
            if which == "before":
                out = before(*args, **kwargs)
                pose, cov = (out[0], out[1]) if out is not None else (None, None)
            else:
                res = estimate_absolute_pose(*args, **kwargs)
                pose, cov = (res.cam_from_world, res.covariance) if res is not None else (None, None)
            times[which].append(time.perf_counter() - t)
            if chosen and pose is not None:
                errors[which].append(pose_error(pose, truth[name]))
                sigmas[which].append(mahalanobis_distance(pose, truth[name], cov) if cov is not None else np.inf)
        t = time.perf_counter()
        floor(*args, **kwargs)
        times["floor"].append(time.perf_counter() - t)
    out = {"problems": len(problems), "queries": len(errors["after"])}

    for which in ("before", "after", "floor"):
        out[f"{which}_p50_ms"] = float(np.median(times[which]) * 1e3)
        out[f"{which}_p90_ms"] = float(np.percentile(times[which], 90) * 1e3)
    for which in ("before", "after"):
        e = np.array(errors[which]).reshape(-1, 2)
        out[f"{which}_median_mm"] = float(np.median(e[:, 0]) * 1e3)
        out[f"{which}_median_deg"] = float(np.median(e[:, 1]))
        out[f"{which}_worst_mm"] = float(e[:, 0].max() * 1e3)
        out[f"{which}_within"] = int(np.sum((e[:, 0] <= bound[0]) & (e[:, 1] <= bound[1])))
        c = consistency(sigmas[which])
        out[f"{which}_inside_2sigma"] = c["within"][SIGMA_LEVELS[1]]
        out[f"{which}_worst_sigma"] = c["max_sigmas"]
    return out


def ring(data: Path, name: str):
    from global_loc.io.images import read_image
    from global_loc.io.text import read_cameras, read_poses
    from global_loc.localizer import Localizer
    from global_loc.pipeline import index_image_folder

    root = data / name
    poses = read_poses(root / "poses_cam_from_world.txt")
    cams = read_cameras(root / "cameras.txt")
    num = lambda n: int("".join(c for c in Path(n).stem if c.isdigit())[-4:])  # noqa: E731
    map_poses = {n: p for n, p in poses.items() if num(n) % 2 == 0}
    queries = sorted(n for n in poses if num(n) % 2 == 1)
    conf = load_preset("sift")
    conf.tracking.enabled = False
    loc = Localizer(index_image_folder(root / "images", map_poses, cams, conf), conf)
    qs = [(q, read_image(root / "images" / q), cams[q]) for q in queries]
    return record(loc, qs), {q: poses[q] for q in queries}


def robot_world(world: Path, data: Path):
    from global_loc.io.bags import BagReader
    from global_loc.io.text import read_tum
    from global_loc.localizer import Localizer
    from global_loc.map.storage import read_map, write_map
    from global_loc.pipeline import index_bag
    from global_loc.synthetic.world import generate_world

    if not (world / "world.json").exists():
        generate_world(world, texture_dir=data if data.is_dir() else None, progress=True)
    path = world / "map.glmap"
    if not path.exists():
        write_map(index_bag(world / "mapping_mcap", "/camera/image_raw", load_preset("sift")), path)
    conf = load_preset("sift")
    conf.tracking.enabled = False
    loc = Localizer(read_map(path), conf)
    truth = {f"{round(t, 3):.3f}": p.inverse() for t, p in read_tum(world / "query_ground_truth_camera.tum")}
    with BagReader(world / "query_mcap", "/camera/image_raw") as reader:
        qs = [(f"{round(f.stamp_ns * 1e-9, 3):.3f}", f.image(), f.camera) for f in reader.frames()]
    return record(loc, qs), truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--world", type=Path, default=Path("/tmp/global_loc_world"))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "pnp.md")
    ap.add_argument("--sets", default="temple_ring,dino_subset,robot_world")
    args = ap.parse_args()
    rows = []
    for name in args.sets.split(","):
        print(f"{name} ...", flush=True)
        if name == "robot_world":
            problems, truth = robot_world(args.world, args.data)
            bound = (0.25, 2.0)
        else:
            problems, truth = ring(args.data, name)
            bound = (0.01, 1.0)
        row = {"set": name, "bound": bound, **compare(problems, truth, bound)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    lines = ["# PnP: one refinement against two, same matches, one run", "",
             f"`benchmarks/pnp.py`, {time.strftime('%Y-%m-%d')}, this machine (2 cores). Problems: every place's "
             "PnP of the default preset's global queries (its 2D-3D matches and point covariances), solved by both, "
             "alternated; floor: pycolmap's RANSAC alone. Errors and consistency: the accepted place of each query "
             "(published covariance, `localization.covariance_scale` included).", "",
             "| set | places | p50 before / after / floor (ms) | p90 before / after (ms) | after / floor | "
             "median error before -> after | worst before -> after | within before -> after | "
             "inside 2 sigma before -> after | worst sigma before -> after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['problems']} | {r['before_p50_ms']:.2f} / **{r['after_p50_ms']:.2f}** / "
            f"{r['floor_p50_ms']:.2f} | {r['before_p90_ms']:.2f} / {r['after_p90_ms']:.2f} | "
            f"{r['after_p50_ms'] / r['floor_p50_ms']:.2f} | "
            f"{r['before_median_mm']:.3f} mm, {r['before_median_deg']:.4f} deg -> {r['after_median_mm']:.3f} mm, "
            f"{r['after_median_deg']:.4f} deg | {r['before_worst_mm']:.2f} -> {r['after_worst_mm']:.2f} mm | "
            f"{r['before_within']} -> {r['after_within']} of {r['queries']} | "
            f"{100 * r['before_inside_2sigma']:.0f} % -> {100 * r['after_inside_2sigma']:.0f} % | "
            f"{r['before_worst_sigma']:.1f} -> {r['after_worst_sigma']:.1f} |")
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
