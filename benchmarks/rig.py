"""Camera rigs: the robot world with a front and a back camera, each camera alone and the rig.

The world (``global-loc synth --cameras front,back``, made in ``--world`` when missing) is
indexed from both cameras' topics (one map); its query run is localized by each camera alone
(``localize_bag``: the base pose from that camera) and as a rig (``localize_bag_rig``: both
cameras' matches pooled, generalized PnP, the one camera that sees the map where only one
does), in two modes: global queries only (one per frame) and tracking (the preset's: against the
local map between global queries, every 2 s, with the bag's odometry). Printed and saved (``benchmarks/results/rig.md``): localized,
within (0.25 m, 2 deg), median and worst error of ``base_link``, the covariance's consistency
(inside the 2-sigma bound), time per frame (the run's wall time over its frames).

Run: ``.venv/bin/python benchmarks/rig.py [--world /tmp/global_loc_rig_world] [--data ../shared/data]``.
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
from global_loc.io.text import read_tum
from global_loc.localizer import Localizer
from global_loc.map.storage import read_map, write_map
from global_loc.pipeline import index_bag, localize_bag, localize_bag_rig

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"
TOPICS = ["/camera/image_raw", "/back_camera/image_raw"]


def summary(name: str, rows: list, gt: dict, seconds: float) -> dict:
    """rows: ``(stamp s, map_from_base or None, base_from_world covariance or None)``."""
    ok = [(t, p, c) for t, p, c in rows if p is not None]
    e = np.array([pose_error(p.inverse(), gt[round(t, 3)].inverse()) for t, p, _ in ok]).reshape(-1, 2)
    sig = [mahalanobis_distance(p.inverse(), gt[round(t, 3)].inverse(), c) for t, p, c in ok if c is not None]
    cons = consistency(sig)
    return {"name": name, "frames": len(rows), "localized": len(ok),
            "within": int(np.sum((e[:, 0] <= 0.25) & (e[:, 1] <= 2.0))),
            "median_mm": float(np.median(e[:, 0]) * 1e3), "median_deg": float(np.median(e[:, 1])),
            "worst_m": float(e[:, 0].max()), "worst_deg": float(e[:, 1].max()),
            "inside_2sigma": cons["within"].get(SIGMA_LEVELS[1], float("nan")), "worst_sigma": cons["max_sigmas"],
            "ms_per_frame": seconds / max(len(rows), 1) * 1e3}


def main() -> None:
    from global_loc.synthetic.world import WorldConfig, generate_world

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", type=Path, default=Path("/tmp/global_loc_rig_world"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "rig.md")
    args = ap.parse_args()
    w = args.world
    if not (w / "world.json").exists():
        generate_world(w, WorldConfig(cameras=("front", "back")), texture_dir=args.data if args.data.is_dir() else None,
                       progress=True)
    path = w / "rig.glmap"
    if not path.exists():
        write_map(index_bag(w / "mapping_mcap", TOPICS, load_preset("sift"), progress=True), path)
    m = read_map(path)
    gt = {round(t, 3): p for t, p in read_tum(w / "query_ground_truth_base.tum")}
    results = []
    for tracking in (False, True):
        conf = load_preset("sift")
        conf.tracking.enabled = tracking
        mode = "tracking" if tracking else "global only"
        for topic in TOPICS:
            t0 = time.perf_counter()
            run = localize_bag(Localizer(m, conf), w / "query_mcap", topic)
            secs = time.perf_counter() - t0
            rows = []
            for p in run.publications:
                cov = _base_covariance(p) if p.pose is not None and p.result.covariance is not None else None
                rows.append((p.stamp_ns * 1e-9, p.pose, cov))
            results.append(summary(f"{topic} alone, {mode}", rows, gt, secs))
            results[-1]["tracked"] = sum(1 for p in run.publications if p.localized and p.result.mode != "global")
            print(json.dumps(results[-1]), flush=True)
        t0 = time.perf_counter()
        frames = localize_bag_rig(Localizer(m, conf), w / "query_mcap", TOPICS)
        secs = time.perf_counter() - t0
        rows = [(f.stamp_ns * 1e-9, f.map_from_base, f.result.covariance if f.result.success else None)
                for f in frames]
        rig = summary(f"rig (front + back), {mode}", rows, gt, secs)
        rig["from_one_camera"] = sum(1 for f in frames if f.result.success and f.result.rig.get("fallback") is not None)
        rig["tracked"] = sum(1 for f in frames if f.result.success and f.result.mode == "rig_tracking")
        results.append(rig)
        print(json.dumps(rig), flush=True)
    lines = ["# Camera rigs: each camera alone and the rig", "",
             f"`benchmarks/rig.py`, one run, {time.strftime('%Y-%m-%d')}, this machine (2 cores, CPU). The robot "
             f"world with a front and a back camera (640x480 each), one map from both cameras' mapping frames "
             f"({m.num_keyframes} keyframes, {m.num_points3D} points, preset sift); the query run "
             f"({len(frames)} frames, 10 Hz) in two modes: a global query per frame, and tracking (the preset's: "
             f"against the local map between global queries, at least one every 2 s; odometry from the bag's tf); "
             f"errors of base_link.", "",
             "| localized by | localized (tracked) | within (0.25 m, 2 deg) | median error | worst error | "
             "inside 2 sigma, worst | per frame |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['localized']}/{r['frames']} ({r['tracked']}) | {r['within']} | {r['median_mm']:.1f} mm, "
                     f"{r['median_deg']:.3f} deg | {r['worst_m']:.3f} m, {r['worst_deg']:.2f} deg | "
                     f"{100 * r['inside_2sigma']:.0f} %, {r['worst_sigma']:.1f} sigma | {r['ms_per_frame']:.0f} ms |")
    rigs = [r for r in results if r["name"].startswith("rig")]
    lines += ["", f"Rig frames answered by one camera alone (the other saw too little of the map): "
              f"{', '.join(str(r['from_one_camera']) for r in rigs)} (global only, tracking). Per frame: the run's wall time over its frames (decoding included)."]
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


def _base_covariance(pub):
    """The covariance of ``base_from_world`` from a publication's camera result (the camera's
    covariance carried to the base frame)."""
    from global_loc.rig_localizer import carry_covariance

    r = pub.result
    base_from_cam = pub.pose.inverse() * pub.map_from_cam
    return carry_covariance(base_from_cam, r.covariance)


if __name__ == "__main__":
    main()
