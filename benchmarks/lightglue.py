#!/usr/bin/env python3
"""LightGlue against mutual nearest neighbours: its matching time per image pair, and the presets
on the temple ring.

    python benchmarks/lightglue.py [--data ../shared/data] [--weights ../shared/weights]
                                   [--parts pair temple] [--presets sift aliked-n16 aliked-lightglue disk-lightglue]

1. ``pair``: ALIKED-N16 on a temple view and on the view warped by a known homography, the
   strongest N keypoints of each (N = 1024, 2048, 4096); LightGlue (adaptive depth and width on,
   the preset's thresholds) on every device present, median of 3 runs after one warm-up; the
   layers it ran, the matches and their median error against the homography.
2. ``temple``: each preset indexes the even views and localizes the odd ones (24 queries): the
   queries within (1 cm, 1 deg) and (5 cm, 5 deg), wrong poses (published beyond (5 cm, 5 deg)),
   median errors, the build time and the per-query time by stage (medians).

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


def temple(data: Path, weights: Path, presets: list[str]) -> list[str]:
    from global_loc.config import load_preset
    from global_loc.geometry.transforms import pose_error
    from global_loc.io.text import read_cameras, read_poses
    from global_loc.localizer import Localizer
    from global_loc.pipeline import index_image_folder, localize_image_folder

    root = data / "temple_ring"
    poses = read_poses(root / "poses_cam_from_world.txt")
    cams = read_cameras(root / "cameras.txt")
    num = lambda n: int(n[7:11])  # noqa: E731 - templeRNNNN.png
    mapping = {n: p for n, p in poses.items() if num(n) % 2 == 0}
    queries = {n: c for n, c in cams.items() if num(n) % 2 == 1}
    rows = ["| preset | keypoints | within (1 cm, 1 deg) | within (5 cm, 5 deg) | wrong | median (mm / deg) "
            "| build (s) | query p50 (ms) | features | matching | pnp |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for preset in presets:
        conf = load_preset(preset)
        conf.models_dir, conf.device = str(weights), "cpu"
        t = time.perf_counter()
        m = index_image_folder(root / "images", mapping, cams, conf)
        build = time.perf_counter() - t
        run = localize_image_folder(Localizer(m, conf), root / "images", queries)
        err = np.array([pose_error(o.result.cam_from_world, poses[o.name]) if o.result.success else (np.inf, np.inf)
                        for o in run.outcomes])
        ok1 = (err[:, 0] < 0.01) & (err[:, 1] < 1.0)
        ok5 = (err[:, 0] < 0.05) & (err[:, 1] < 5.0)
        wrong = np.isfinite(err[:, 0]) & ~ok5
        fin = err[np.isfinite(err[:, 0])]
        med = lambda k: 1e3 * float(np.median([o.result.timings.get(k, 0.0) for o in run.outcomes]))  # noqa: E731
        rows.append(f"| {preset} | {conf.features.get('max_keypoints')} | {ok1.sum()}/{len(err)} | {ok5.sum()}/{len(err)} "
                    f"| {wrong.sum()} | {1e3 * np.median(fin[:, 0]):.3f} / {np.median(fin[:, 1]):.4f} | {build:.0f} "
                    f"| {med('total'):.0f} | {med('local_features'):.0f} | {med('matching'):.0f} | {med('pnp'):.1f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--weights", type=Path, default=ROOT.parent / "shared" / "weights")
    ap.add_argument("--parts", nargs="+", choices=["pair", "temple"], default=["pair", "temple"])
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
    if "temple" in args.parts:
        lines += ["## Temple ring (even views map, odd views query; CPU)", ""]
        lines += temple(args.data, args.weights, args.presets) + [""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
