"""What a save of the map indexer costs against the size of the map: the whole map built again
(every save before, and with ``incremental_save_after: 0``) against the keyframes since the
last save added to the map written then (:class:`~global_loc.map.incremental.IncrementalIndexer`
once the saved map holds ``incremental_save_after`` keyframes).

A synthetic corridor at the level of features (``test/synthetic.py``'s 32-d features, so that
extraction costs nothing and the save is all that is timed): points on its walls, floor and
ceiling, 400 per metre, each with its own random descriptor; a keyframe every 0.5 m looking
along it, turned by up to 15 deg, 0.3 px keypoint noise. For each map size N, a map of N
keyframes is saved (built), then ``--added`` more keyframes are added and saved twice: built
from all N + added, and extended from the saved map. Prints and saves
``benchmarks/results/save_time.md``: seconds of each (one run each; extraction not included),
their ratio, and the 3D points of each map.

Run: ``.venv/bin/python benchmarks/save_time.py [--sizes 50 200 500 1000 2000] [--added 50]``.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))


class Corridor:
    """Points along a corridor (x from 0 to ``length`` m, walls at y = +-2, floor and ceiling at
    z = +-1.2) and the features a camera sees of them."""

    def __init__(self, length: float, per_metre: int = 400, dim: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        n = int(length * per_metre)
        x = rng.uniform(0, length, n)
        face = rng.integers(0, 4, n)
        y = np.where(face == 0, -2.0, np.where(face == 1, 2.0, rng.uniform(-2, 2, n)))
        z = np.where(face == 2, -1.2, np.where(face == 3, 1.2, rng.uniform(-1.2, 1.2, n)))
        self.points = np.stack([x, y, z], 1)
        d = rng.normal(size=(n, dim)).astype(np.float32)
        self.descriptors = d / np.linalg.norm(d, axis=1, keepdims=True)
        self.rng = rng
        from global_loc.geometry.camera import Camera

        self.camera = Camera("PINHOLE", 640, 480, [400, 400, 319.5, 239.5])

    def keyframe(self, k: int):
        from global_loc.geometry.transforms import Pose
        from global_loc.types import Keyframe, LocalFeatures

        c = np.array([0.5 * k, 0.3 * np.sin(0.1 * k), 0.0])
        yaw = np.radians(15.0) * np.sin(0.05 * k)
        forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        z = forward
        y = np.array([0.0, 0.0, -1.0])
        x = np.cross(y, z)
        R = np.stack([x, y, z])
        pose = Pose(R, -R @ c)
        near = np.flatnonzero(np.abs(self.points[:, 0] - c[0]) < 15)
        pc = pose.transform(self.points[near])
        uv = self.camera.project(pc)
        ok = (pc[:, 2] > 0.3) & (pc[:, 2] < 12) & np.all(np.isfinite(uv), 1)
        ok &= (uv[:, 0] >= 0) & (uv[:, 0] <= 639) & (uv[:, 1] >= 0) & (uv[:, 1] <= 479)
        idx = near[ok]
        kp = uv[ok] + self.rng.normal(scale=0.3, size=(len(idx), 2))
        d = self.descriptors[idx] + self.rng.normal(scale=0.05, size=(len(idx), self.descriptors.shape[1]))
        d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
        return Keyframe(f"kf{k:05d}", self.camera, pose, float(k)), LocalFeatures(
            kp.astype(np.float32), d, np.ones(len(idx), np.float32), (640, 480))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500, 1000, 2000])
    ap.add_argument("--added", type=int, default=50)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "save_time.md")
    args = ap.parse_args()
    from synthetic import synthetic_conf

    from global_loc.map.incremental import IncrementalIndexer

    world = Corridor(0.5 * (max(args.sizes) + args.added) + 20)
    frames = {}

    def frame(k):
        if k not in frames:
            frames[k] = world.keyframe(k)
        return frames[k]

    lines = [f"# Map indexer saves: `python benchmarks/save_time.py --sizes {' '.join(map(str, args.sizes))} "
             f"--added {args.added}`, {time.strftime('%Y-%m-%d')}, {platform.node() or 'this machine'}", "",
             f"Synthetic corridor (32-d features, {int(len(world.points) / (0.5 * (max(args.sizes) + args.added) + 20))}"
             " points per metre, a keyframe every 0.5 m); seconds of one save of a map of N keyframes after "
             f"{args.added} more were added: the whole map built again, or the {args.added} added to the map saved "
             "at N (extraction not included).", "",
             "| keyframes N | whole build (s) | incremental (s) | ratio | 3D points (whole / incremental) |",
             "|---:|---:|---:|---:|---|"]
    for n in args.sizes:
        inc = IncrementalIndexer(synthetic_conf(), incremental_after=1)
        full = IncrementalIndexer(synthetic_conf(), incremental_after=0)
        for k in range(n):
            kf, f = frame(k)
            inc.builder.add_keyframe(kf, features=f, select=False)
            full.builder.add_keyframe(kf, features=f, select=False)
        inc.save()
        for k in range(n, n + args.added):
            kf, f = frame(k)
            inc.builder.add_keyframe(kf, features=f, select=False)
            full.builder.add_keyframe(kf, features=f, select=False)
        t0 = time.perf_counter()
        m_full = full.save()
        t1 = time.perf_counter()
        m_inc = inc.save()
        t2 = time.perf_counter()
        lines.append(f"| {n} | {t1 - t0:.2f} | {t2 - t1:.2f} | {(t1 - t0) / (t2 - t1):.1f} | "
                     f"{m_full.num_points3D} / {m_inc.num_points3D} |")
        print(lines[-1], flush=True)
    from global_loc.benchmarking import write_table

    write_table(lines, args.out)


if __name__ == "__main__":
    main()
