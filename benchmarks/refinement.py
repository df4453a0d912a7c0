#!/usr/bin/env python3
"""Feature-metric refinement: accuracy before and after, its acceptance, and its cost per query.

    python benchmarks/refinement.py [--data ../shared/data] [--models-dir ../shared/weights]
        [--presets sift aliked-n16 r2d2 xfeat] [--world demo_out/world --map demo_out/map.glmap]

1. Temple ring (map: even views, queries: odd views), with the given cameras and with the
   principal point moved by +0.5 px (map and queries), for each preset with the weight-free
   ``gradients`` source and, for the learned presets, with the network's own dense map (DRAN's
   reuse; one map build per preset, the second source's reference features computed from the
   same keyframes and observations). Every query is localized once with refinement; the PnP
   pose is the one its log records before refinement, so both columns come from one run.
2. Dino (48 views of an untextured object): no pose may be wrong.
3. Maupertuis (4 photos, a COLMAP model): each photo against a map of the other three.
4. Robot world (``make demo``'s query run, 300 frames from its bag): global-only and tracking.

Printed and written to ``benchmarks/results/refinement.md`` (figures in ``refinement.json``):
median position / rotation error of PnP and of the refined poses, recall within (1 cm, 1 deg)
(temple) or (0.25 m, 2 deg) (robot world), how many poses refinement made better, how many it
kept, and its time per query (median, this machine, same run).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from global_loc.config import load_preset  # noqa: E402
from global_loc.geometry.transforms import Pose, pose_error  # noqa: E402
from global_loc.io.images import read_image  # noqa: E402
from global_loc.io.text import read_cameras, read_poses  # noqa: E402
from global_loc.localizer import Localizer  # noqa: E402
from global_loc.pipeline import index_image_folder, localize_image_folder  # noqa: E402
from global_loc.refinement import create_dense_features, sample_pyramid  # noqa: E402
from global_loc.refinement.reference import robust_mean  # noqa: E402

OWN_SOURCE = {"aliked-n16": "aliked", "r2d2": "r2d2", "xfeat": "xfeat"}


def _shift_cameras(cameras: dict, dx: float) -> dict:
    from global_loc.geometry.camera import Camera

    out = {}
    for n, c in cameras.items():
        p = np.array(c.params, float)
        if c.model not in ("PINHOLE", "SIMPLE_PINHOLE"):
            raise ValueError("the shifted-camera run expects pinhole cameras")
        k = 2 if c.model == "PINHOLE" else 1
        p[k:k + 2] += dx
        out[n] = Camera(c.model, c.width, c.height, p)
    return out


def _with_references(map_index, images: Path, dense_conf: dict, conf):
    """A copy of ``map_index`` whose points carry reference features of ``dense_conf``,
    computed as the map builder does (robust mean of the samples at the observations)."""
    import copy

    dense = create_dense_features(dense_conf, device=conf.device, models_dir=conf.models_dir or None)
    samples = np.full((map_index.num_observations, dense.dim), np.nan, np.float32)
    for k, name in enumerate(map_index.names):
        rows = map_index.observation_rows(k)
        samples[rows] = sample_pyramid(dense.extract(read_image(images / name)), map_index.obs_keypoints[rows])
    m = copy.copy(map_index)
    m.point_features = robust_mean(samples, map_index.obs_point_index, map_index.num_points3D).astype(np.float16)
    m.dense_features = dense.info()
    return m


def _consistency(distances: list[float], scale: float) -> dict:
    """Share inside the 2-sigma bound and the largest error in sigmas, for the covariances
    as published (``scale``: their ``localization.covariance_scale``) and without the scale."""
    from global_loc.evaluation import SIGMA_LEVELS, consistency

    d = np.asarray(distances, np.float64)
    out = {}
    for label, s in (("unscaled", 1.0 / scale), ("published", 1.0)):
        c = consistency(d / np.sqrt(s) if label == "unscaled" else d)
        out[label] = {"within_2sigma": c["within"][SIGMA_LEVELS[1]], "max_sigmas": c["max_sigmas"]}
    return out


def _summary(pairs, bounds, times_ms, accepted, localized, total, distances=(), scale=1.0):
    """pairs: (PnP error, refined error) per localized query, each (m, deg); distances: the
    published poses' Mahalanobis distances under their covariances."""
    if not pairs:
        return {"localized": 0, "queries": total}
    e0 = np.array([p[0] for p in pairs])
    e1 = np.array([p[1] for p in pairs])

    def within(e):
        return int(np.sum((e[:, 0] <= bounds[0]) & (e[:, 1] <= bounds[1])))

    return {
        "queries": total,
        "localized": localized,
        "pnp_median_mm": float(np.median(e0[:, 0]) * 1e3),
        "pnp_median_deg": float(np.median(e0[:, 1])),
        "ref_median_mm": float(np.median(e1[:, 0]) * 1e3),
        "ref_median_deg": float(np.median(e1[:, 1])),
        "pnp_within": within(e0),
        "ref_within": within(e1),
        "pnp_worst_mm": float(e0[:, 0].max() * 1e3),
        "ref_worst_mm": float(e1[:, 0].max() * 1e3),
        "better": int(np.sum(e1[:, 0] < e0[:, 0])),
        "accepted": int(accepted),
        "refinement_ms_p50": float(np.median(times_ms)) if times_ms else float("nan"),
        "consistency": _consistency(list(distances), scale) if len(distances) else {},
    }


def _pnp_pose(result) -> Pose:
    r = result.refinement
    if r and "q_wxyz_before" in r:
        return Pose.from_qt(r["q_wxyz_before"], r["t_before"])
    return result.cam_from_world


def _localize_set(map_index, conf, images: Path, queries: dict, gt: dict, bounds) -> dict:
    from global_loc.evaluation import mahalanobis_distance

    loc = Localizer(map_index, conf)
    run = localize_image_folder(loc, images, queries)
    pairs, times, acc, dist = [], [], 0, []
    for o in run.outcomes:
        if not o.result.success:
            continue
        pairs.append((pose_error(_pnp_pose(o.result), gt[o.name]), pose_error(o.result.cam_from_world, gt[o.name])))
        times.append(o.result.timings.get("refinement", 0.0) * 1e3)
        acc += bool(o.result.refinement.get("accepted"))
        if o.result.covariance is not None:
            dist.append(mahalanobis_distance(o.result.cam_from_world, gt[o.name], o.result.covariance))
    return _summary(pairs, bounds, times, acc, len(pairs), len(queries), dist, conf.localization.covariance_scale)


def temple(data: Path, presets: list[str], models_dir: str, shifts=(0.0, 0.5)) -> list[dict]:
    root = data / "temple_ring"
    poses = read_poses(root / "poses_cam_from_world.txt")
    cams_all = read_cameras(root / "cameras.txt")
    number = lambda n: int(n[len("templeR"):len("templeR") + 4])  # noqa: E731
    map_poses = {n: p for n, p in poses.items() if number(n) % 2 == 0}
    rows = []
    for shift in shifts:
        cams = cams_all if shift == 0 else _shift_cameras(cams_all, shift)
        queries = {n: c for n, c in cams.items() if number(n) % 2 == 1}
        for preset in presets if shift == 0 else presets[:1]:
            sources = ["gradients"] + ([OWN_SOURCE[preset]] if preset in OWN_SOURCE and shift == 0 else [])
            conf = load_preset(preset, ["refinement.method=featuremetric", f"refinement.features.name={sources[-1]}"])
            conf.models_dir = models_dir
            t = time.perf_counter()
            m = index_image_folder(root / "images", map_poses, cams, conf)
            build_s = time.perf_counter() - t
            for source in sources:
                conf_s = load_preset(preset, ["refinement.method=featuremetric", f"refinement.features.name={source}"])
                conf_s.models_dir = models_dir
                m_s = m if source == sources[-1] else _with_references(m, root / "images", conf_s.refinement.features, conf_s)
                row = _localize_set(m_s, conf_s, root / "images", queries, poses, (0.01, 1.0))
                row.update(dataset=f"temple{'' if shift == 0 else f' (+{shift} px cameras)'}", preset=preset,
                           source=source, map_build_s=round(build_s, 1), map_noise_px=round(m_s.point_noise_px, 3))
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def dino(data: Path) -> dict:
    root = data / "dino_subset"
    poses = read_poses(root / "poses_cam_from_world.txt")
    cams = read_cameras(root / "cameras.txt")
    number = {n: int(n[4:8]) for n in poses}  # as the test: even views map, odd views query
    map_poses = {n: p for n, p in poses.items() if number[n] % 2 == 0}
    queries = {n: c for n, c in cams.items() if number[n] % 2 == 1}
    conf = load_preset("sift", ["refinement.method=featuremetric"])
    m = index_image_folder(root / "images", map_poses, cams, conf)
    row = _localize_set(m, conf, root / "images", queries, poses, (0.01, 1.0))
    row.update(dataset="dino", preset="sift", source="gradients", map_noise_px=round(m.point_noise_px, 3))
    print(json.dumps(row), flush=True)
    return row


def maupertuis(data: Path) -> dict:
    """Each of the 4 photos against a map of the other three (COLMAP import), as the test."""
    from global_loc.evaluation import mahalanobis_distance
    from global_loc.io.colmap import read_colmap_model
    from global_loc.pipeline import index_colmap_model

    root = data / "maupertuis_colmap"
    model = read_colmap_model(root / "reconstruction")
    conf = load_preset("sift", ["refinement.method=featuremetric"])
    pairs, times, acc, dist = [], [], 0, []
    for kf in model.keyframes:
        m = index_colmap_model(root / "reconstruction", root / "images", conf, exclude=[kf.name])
        res = Localizer(m, conf).localize(read_image(root / "images" / kf.name), kf.camera)
        if not res.success:
            continue
        pairs.append((pose_error(_pnp_pose(res), kf.cam_from_world), pose_error(res.cam_from_world, kf.cam_from_world)))
        times.append(res.timings.get("refinement", 0.0) * 1e3)
        acc += bool(res.refinement.get("accepted"))
        dist.append(mahalanobis_distance(res.cam_from_world, kf.cam_from_world, res.covariance))
    row = _summary(pairs, (0.25, 2.0), times, acc, len(pairs), len(model.keyframes), dist,
                   conf.localization.covariance_scale)
    row.update(dataset="Maupertuis, leave one out (within 0.25 m, 2 deg)", preset="sift", source="gradients")
    print(json.dumps(row), flush=True)
    return row


def robot_world(world_dir: Path, map_path: Path, textures: Path) -> list[dict]:
    from global_loc.benchmarking import ensure_robot_world
    from global_loc.evaluation import mahalanobis_distance, trajectory_errors
    from global_loc.io.text import read_tum
    from global_loc.localizer import conf_for_map
    from global_loc.map.storage import read_map
    from global_loc.pipeline import localize_bag

    ensure_robot_world(world_dir, map_path, textures)
    m = read_map(map_path)
    t = time.perf_counter()
    m.point_covariances(np.zeros(0, np.int64))  # what a localizer does when it starts
    cov_s = time.perf_counter() - t
    gt = read_tum(world_dir / "query_ground_truth_camera.tum")
    gt_by = {round(s, 6): p for s, p in gt}
    stamps_gt = np.array(sorted(gt_by))
    rows = []
    for mode in ("global-only", "tracking"):
        conf = conf_for_map(m)
        conf.refinement.method = "featuremetric"
        conf.tracking.enabled = mode == "tracking"
        run = localize_bag(Localizer(m, conf), world_dir / "query_mcap", "/camera/image_raw")
        pairs, times, acc, dist = [], [], 0, []
        for p in run.publications:
            if not p.localized:
                continue
            s = p.stamp_ns * 1e-9
            truth = gt_by[stamps_gt[np.argmin(np.abs(stamps_gt - s))]]  # map_from_camera
            pnp = _pnp_pose(p.result)
            pairs.append((pose_error(pnp, truth.inverse()), pose_error(p.result.cam_from_world, truth.inverse())))
            times.append(p.result.timings.get("refinement", 0.0) * 1e3)
            acc += bool(p.result.refinement.get("accepted"))
            if p.result.covariance is not None:
                dist.append(mahalanobis_distance(p.result.cam_from_world, truth.inverse(), p.result.covariance))
        row = _summary(pairs, (0.25, 2.0), times, acc, len(pairs), len(run.publications), dist,
                       conf.localization.covariance_scale)
        row.update(dataset=f"robot world, {mode}", preset=conf.name, source="gradients",
                   map_noise_px=round(m.point_noise_px, 3), point_covariances_s=round(cov_s, 3),
                   map_points=m.num_points3D, map_observations=m.num_observations)
        print(json.dumps(row), flush=True)
        rows.append(row)
    _ = trajectory_errors  # the same association as `global-loc evaluate` (nearest stamp)
    return rows


def markdown(res: dict) -> str:
    lines = [f"Feature-metric refinement on {res['machine']}; `python benchmarks/refinement.py`, {res['date']}", "",
             "PnP: the pose before refinement (from the same run's log); refined: the published pose "
             "(PnP's where a check kept it). Within: (1 cm, 1 deg) for temple and dino, (0.25 m, 2 deg) "
             "for the robot world. Consistency of the published pose: the share of errors inside the "
             "2-sigma (95.45 %) bound of chi-square(6) and the largest in sigmas, with the covariance "
             "as PnP gives it with the map points' share (x1) and as published "
             "(`localization.covariance_scale`, 4). Map noise: the a-posteriori standard deviation of the "
             "map's reprojection residuals, behind the points' covariances.", "",
             "| data | preset | dense source | localized | PnP median | refined median | within PnP -> refined "
             "| worst PnP -> refined | refined better | accepted | refinement p50 "
             "| inside 2 sigma, worst (covariance x1) | inside 2 sigma, worst (published) | map noise |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        if not r.get("localized"):
            lines.append(f"| {r['dataset']} | {r['preset']} | {r['source']} | 0/{r['queries']} | | | | | | | | | | |")
            continue
        c = r.get("consistency") or {}
        cons = [f"{100 * c[k]['within_2sigma']:.0f} %, {c[k]['max_sigmas']:.1f} sigma" if k in c else ""
                for k in ("unscaled", "published")]
        lines.append(
            f"| {r['dataset']} | {r['preset']} | {r['source']} | {r['localized']}/{r['queries']} "
            f"| {r['pnp_median_mm']:.3f} mm, {r['pnp_median_deg']:.4f} deg "
            f"| **{r['ref_median_mm']:.3f} mm, {r['ref_median_deg']:.4f} deg** "
            f"| {r['pnp_within']} -> {r['ref_within']} | {r['pnp_worst_mm']:.2f} -> {r['ref_worst_mm']:.2f} mm "
            f"| {r['better']}/{r['localized']} | {r['accepted']}/{r['localized']} | {r['refinement_ms_p50']:.1f} ms "
            f"| {cons[0]} | {cons[1]} | {_px(r.get('map_noise_px'))} |")
    for r in res["rows"]:
        if "point_covariances_s" in r:
            lines += ["", f"The robot world map's point covariances ({r['map_points']} points, "
                          f"{r['map_observations']} observations): {r['point_covariances_s']:.2f} s, once per localizer."]
            break
    return "\n".join(lines) + "\n"


def _px(v) -> str:
    return "" if v is None else f"{v:.2f} px"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "weights"))
    ap.add_argument("--presets", nargs="+", default=["sift", "aliked-n16", "r2d2", "xfeat"])
    ap.add_argument("--world", type=Path, default=ROOT / "demo_out" / "world")
    ap.add_argument("--map", type=Path, default=ROOT / "demo_out" / "map.glmap")
    ap.add_argument("--skip", nargs="*", default=[], choices=["temple", "dino", "maupertuis", "robot"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "refinement.md")
    ap.add_argument("--update", action="store_true", help="keep the rows of the skipped parts from the last run")
    args = ap.parse_args()
    rows = []
    if "temple" not in args.skip:
        rows += temple(args.data, args.presets, args.models_dir)
    if "dino" not in args.skip:
        rows.append(dino(args.data))
    if "maupertuis" not in args.skip:
        rows.append(maupertuis(args.data))
    if "robot" not in args.skip:
        rows += robot_world(args.world, args.map, args.data)
    if args.update and args.out.with_suffix(".json").exists():  # keep the rows of the parts skipped
        old = json.loads(args.out.with_suffix(".json").read_text())["rows"]
        ran = {r["dataset"] for r in rows}
        rows = [r for r in old if r["dataset"] not in ran] + rows
    res = {"machine": f"{platform.node() or 'this machine'}, {os.cpu_count()} cores",
           "date": time.strftime("%Y-%m-%d"), "rows": rows}
    text = markdown(res)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
