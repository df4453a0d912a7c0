#!/usr/bin/env python3
"""LightGlue against mutual nearest neighbours: its matching time per image pair, and the presets
on the temple ring, a sparse temple map, the dino and the robot world.

    python benchmarks/lightglue.py [--data ../shared/data] [--weights ../shared/weights]
        [--parts pair temple sparse dino robot_world] [--every 10]
        [--presets sift aliked-n16 aliked-lightglue disk-lightglue]

Parts (``--parts``, all by default):

1. ``pair``: ALIKED-N16 on a temple view and on the view warped by a known homography, the
   strongest N keypoints of each (N = 1024, 2048, 4096); LightGlue (adaptive depth and width on,
   the preset's thresholds) on every device present, median of 3 runs after one warm-up; the
   layers it ran, the matches and their median error against the homography.
2. ``temple`` (even views map, odd views query), ``sparse`` (every 4th temple view map, the rest
   query: wider baselines), ``dino`` (the dino subset, even/odd: little texture, where "not
   localized" is the right answer for many views) and ``robot_world`` (``make demo``'s robot
   world, one query frame in ``--every``, no tracking): each preset indexes the map views and
   localizes the others: the queries within (1 cm, 1 deg) and within the set's bounds ((5 cm,
   5 deg); robot world (0.25 m, 2 deg)), the queries not localized, wrong poses (published beyond
   the bounds), median errors, the build time and the per-query time by stage (medians).

Prints markdown and writes ``benchmarks/results/lightglue.md``. The machine is shared: compare
figures of one run.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["pair", "temple", "sparse", "dino", "robot_world"]
H = np.array([[0.9, 0.1, 30.0], [-0.08, 0.95, 20.0], [1e-4, 0.0, 1.0]])


def pair(data: Path, weights: Path) -> list[str]:
    import cv2
    import torch

    from global_loc.config import load_preset
    from global_loc.features import create_extractor
    from global_loc.io.images import read_image
    from global_loc.matching.lightglue import LightGlueMatcher

    conf = load_preset("aliked-lightglue", ["features.max_keypoints=4096"])
    ex = create_extractor(conf.features, device="cpu", models_dir=weights)
    image = read_image(data / "temple_ring" / "images" / "templeR0001.png")
    f0 = ex.extract(image)
    f1 = ex.extract(cv2.warpPerspective(image, H, (image.shape[1], image.shape[0])))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = ["| device | keypoints | p50 (ms) | layers | matches | median error (px) |", "|---|---:|---:|---:|---:|---:|"]
    for device in devices:
        lg = LightGlueMatcher(conf.features, conf.matching, device=device, models_dir=weights)
        for n in (1024, 2048, 4096):
            args = (f0.keypoints[:n], f0.descriptors[:n], f0.image_size, f1.keypoints[:n], f1.descriptors[:n],
                    f1.image_size)
            lg.match(*args)
            times = []
            for _ in range(3):
                if device == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                i0, i1, _ = lg.match(*args)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            p = cv2.perspectiveTransform(f0.keypoints[i0][None].astype(np.float64), H)[0]
            err = np.linalg.norm(p - f1.keypoints[i1], axis=1)
            rows.append(f"| {device} | {n} | {1e3 * np.median(times):.0f} | {lg.last_stats.get('layers', float('nan')):.0f} "
                        f"| {len(i0)} | {np.median(err):.2f} |")
            print(rows[-1], flush=True)
    return rows


def _row(name: str, preset: str, conf, err: np.ndarray, bounds: tuple[float, float], build: float,
         timings: list[dict]) -> str:
    """One table row: ``err`` (N, 2) metres and degrees, inf where not localized."""
    ok1 = (err[:, 0] < 0.01) & (err[:, 1] < 1.0)
    okb = (err[:, 0] < bounds[0]) & (err[:, 1] < bounds[1])
    wrong = np.isfinite(err[:, 0]) & ~okb
    fin = err[np.isfinite(err[:, 0])]
    med = lambda k: 1e3 * float(np.median([t.get(k, 0.0) for t in timings]))  # noqa: E731
    err_txt = f"{1e3 * np.median(fin[:, 0]):.3f} / {np.median(fin[:, 1]):.4f}" if len(fin) else "-"
    return (f"| {name} | {preset} | {conf.features.get('max_keypoints')} | {ok1.sum()}/{len(err)} "
            f"| {okb.sum()}/{len(err)} | {len(err) - len(fin)} | {wrong.sum()} | {err_txt} | {build:.0f} "
            f"| {med('total'):.0f} | {med('local_features'):.0f} | {med('matching'):.0f} | {med('pnp'):.1f} |")


WRONG: list[str] = []  # one line per wrong pose, printed under the table


def _note_wrong(name: str, preset: str, labels: list[str], err: np.ndarray, bounds: tuple[float, float],
                results: list) -> None:
    """Record each published pose beyond ``bounds`` with what the localizer knew of it: inliers
    of matches and the rotation / position standard deviations of its covariance."""
    for label, e, r in zip(labels, err, results):
        if not np.isfinite(e[0]) or (e[0] < bounds[0] and e[1] < bounds[1]):
            continue
        c = r.covariance
        std = (f"rotation std {np.degrees(np.sqrt(np.diag(c)[:3]).max()):.2f} deg, position std "
               f"{1e3 * np.sqrt(np.diag(c)[3:]).max():.1f} mm") if c is not None else "no covariance"
        WRONG.append(f"- {name}, {preset}, {label}: {1e3 * e[0]:.0f} mm / {e[1]:.1f} deg off, "
                     f"{r.num_inliers}/{r.num_matches} inliers, {std}")


HEADER = ["| set | preset | keypoints | within (1 cm, 1 deg) | within bounds | not localized | wrong (beyond bounds) "
          "| median (mm / deg) | build (s) | query p50 (ms) | features | matching | pnp |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]


def _conf(preset: str, weights: Path):
    from global_loc.config import load_preset

    conf = load_preset(preset)
    conf.models_dir, conf.device = str(weights), "cpu"
    return conf


def image_set(name: str, root: Path, in_map, weights: Path, presets: list[str]) -> list[str]:
    """An image folder with ground truth: the views ``in_map(number)`` selects index the map,
    the others query it; bounds (5 cm, 5 deg)."""
    from global_loc.geometry.transforms import pose_error
    from global_loc.io.text import read_cameras, read_poses
    from global_loc.localizer import Localizer
    from global_loc.pipeline import index_image_folder, localize_image_folder

    poses = read_poses(root / "poses_cam_from_world.txt")
    cams = read_cameras(root / "cameras.txt")
    num = lambda n: int("".join(c for c in n if c.isdigit()))  # noqa: E731 - templeR0001.png, dino0001.png
    mapping = {n: p for n, p in poses.items() if in_map(num(n))}
    queries = {n: c for n, c in cams.items() if not in_map(num(n))}
    rows = []
    for preset in presets:
        conf = _conf(preset, weights)
        t = time.perf_counter()
        m = index_image_folder(root / "images", mapping, cams, conf)
        build = time.perf_counter() - t
        run = localize_image_folder(Localizer(m, conf), root / "images", queries)
        err = np.array([pose_error(o.result.cam_from_world, poses[o.name]) if o.result.success else (np.inf, np.inf)
                        for o in run.outcomes])
        label = f"{name} ({len(mapping)} map / {len(queries)} queries)"
        rows.append(_row(label, preset, conf, err, (0.05, 5.0), build, [o.result.timings for o in run.outcomes]))
        _note_wrong(name, preset, [o.name for o in run.outcomes], err, (0.05, 5.0), [o.result for o in run.outcomes])
        print(rows[-1], flush=True)
    return rows


def robot_world(world: Path, textures: Path, weights: Path, presets: list[str], every: int) -> list[str]:
    """make demo's robot world: each preset indexes the mapping run's bag and localizes one
    query frame in ``every`` (global queries, no tracking); bounds (0.25 m, 2 deg)."""
    from global_loc.benchmarking import ensure_robot_world
    from global_loc.evaluation import trajectory_errors
    from global_loc.io.text import read_tum
    from global_loc.localizer import Localizer
    from global_loc.pipeline import index_bag, localize_bag

    ensure_robot_world(world, world.parent / "map.glmap", textures)  # make demo's, where missing
    gt = read_tum(world / "query_ground_truth_camera.tum")
    rows = []
    for preset in presets:
        conf = _conf(preset, weights)
        conf.tracking.enabled = False
        if conf.mapping.keyframe_min_distance_m == 0 and conf.mapping.keyframe_min_rotation_deg == 0:
            conf.mapping.keyframe_min_distance_m = 0.2  # as global-loc index --bag selects (STREAM_KEYFRAME_DEFAULTS)
            conf.mapping.keyframe_min_rotation_deg = 10.0
        t = time.perf_counter()
        m = index_bag(world / "mapping_mcap", "/camera/image_raw", conf)
        build = time.perf_counter() - t
        run = localize_bag(Localizer(m, conf), world / "query_mcap", "/camera/image_raw", every=every)
        est = [(p.stamp_ns * 1e-9, p.map_from_cam) for p in run.publications if p.localized]
        stamps = [p.stamp_ns * 1e-9 for p in run.publications]
        err = np.array(list(trajectory_errors(est, gt, stamps).values()))
        rows.append(_row(f"robot world ({m.num_keyframes} keyframes / {len(stamps)} queries)", preset, conf, err,
                         (0.25, 2.0), build, [p.result.timings for p in run.publications]))
        _note_wrong("robot world", preset, [f"t={s:.2f} s" for s in stamps], err, (0.25, 2.0),
                    [p.result for p in run.publications])
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--weights", type=Path, default=ROOT.parent / "shared" / "weights")
    ap.add_argument("--world", type=Path, default=ROOT / "demo_out" / "world")
    ap.add_argument("--every", type=int, default=10, help="robot world: localize one query frame in this many")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS)
    ap.add_argument("--presets", nargs="+", default=["sift", "aliked-n16", "aliked-lightglue", "disk-lightglue"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lightglue.md")
    args = ap.parse_args()
    import torch

    lines = [f"# LightGlue: `python benchmarks/lightglue.py --parts {' '.join(args.parts)}`, "
             f"{time.strftime('%Y-%m-%d')}, {platform.node() or 'this machine'}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} CPU threads, CUDA {'yes' if torch.cuda.is_available() else 'no'}", ""]
    if "pair" in args.parts:
        lines += ["## One image pair (ALIKED-N16 on a temple view and its warp by a known homography)", ""]
        lines += pair(args.data, args.weights) + [""]
    sets = [p for p in args.parts if p != "pair"]
    if sets:
        lines += ["## Localization (CPU; per-query times are medians in ms; wrong: a published pose beyond the "
                  "set's bounds, (5 cm, 5 deg) for the image sets, (0.25 m, 2 deg) for the robot world)", ""]
        lines += HEADER
    images = {"temple": ("temple", "temple_ring", lambda k: k % 2 == 0),
              "sparse": ("sparse temple", "temple_ring", lambda k: k % 4 == 1),
              "dino": ("dino", "dino_subset", lambda k: k % 2 == 0)}
    for part in sets:
        if part == "robot_world":
            lines += robot_world(args.world, args.data, args.weights, args.presets, args.every)
        else:
            name, folder, in_map = images[part]
            lines += image_set(name, args.data / folder, in_map, args.weights, args.presets)
    if sets:
        lines += ["", "Wrong poses:" if WRONG else "Wrong poses: none.", ""] + WRONG
    lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
