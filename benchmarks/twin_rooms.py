"""Places that look alike: the twin-rooms world, with and without the ambiguity check.

The world (``global-loc synth --layout twin-rooms``, :mod:`global_loc.synthetic.twin_rooms`):
two rooms alike in texture and geometry but for one wall, joined by a doorway. Its mapping run
is indexed with the default preset; then its query run (one lap in each room) and its kidnap run
(the robot carried from room A to the same spot in room B, odometry unaware) are localized as
the localizer node would (``localize_bag``: the bag's tf, odometry priors), in global-only and
tracking modes, each with the ambiguity check (the default) and without it
(``localization.ambiguity_min_ratio=0``: the strongest place always wins, as before the check).

Per run it prints and saves (``benchmarks/results/twin_rooms.md``): frames, localized, within
(0.25 m, 2 deg), **wrong poses beyond (0.25 m, 5 deg)** (published with confidence), median error,
frames refused as ambiguous, frames settled by the tracking prior, tracks dropped because the
map rejected the prior. For the kidnap run, also: frames published in the wrong room after the
kidnap, and the first frame localized in the right room (seconds after the kidnap).

Run: ``.venv/bin/python benchmarks/twin_rooms.py [--world DIR] [--data ../shared/data]``
(generates the world in DIR when it has none: about 3 minutes on 2 cores). ``--set
localization.ambiguity_prior_min_ratio=0.8`` gives ``twin_rooms_prior_ratio_0.8.md``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from global_loc.config import load_preset
from global_loc.geometry.transforms import pose_error
from global_loc.io.text import read_tum
from global_loc.localizer import Localizer
from global_loc.map.storage import read_map, write_map
from global_loc.pipeline import index_bag, localize_bag

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"


def world_and_map(world: Path, data: Path):
    """The twin-rooms world in ``world`` (generated when missing) and its map (indexed when
    missing): ``(world.json dict, MapIndex)``."""
    from global_loc.synthetic.world import WorldConfig, generate_world

    if not (world / "world.json").exists():
        generate_world(world, WorldConfig.twin_rooms(), texture_dir=data if data.is_dir() else None, progress=True)
    meta = json.loads((world / "world.json").read_text())
    if meta["config"]["layout"] != "twin-rooms":
        raise SystemExit(f"{world} holds a {meta['config']['layout']!r} world, not twin-rooms")
    path = world / "map.glmap"
    if not path.exists():
        bags = meta["bags"]["mcap"]
        write_map(index_bag(bags["mapping"], bags["image_topic"], load_preset("sift"), progress=True), path)
    return meta, read_map(path)


def in_room_b(map_from_cam_t: np.ndarray, room_length: float) -> bool:
    return bool(map_from_cam_t[0] > room_length)


def run(m, bag: str, topic: str, gt_path: Path, tracking: bool, check: bool, room_length: float,
        kidnap_stamp: float | None = None, overrides=()) -> dict:
    conf = load_preset("sift", list(overrides))
    conf.tracking.enabled = tracking
    if not check:
        conf.localization.ambiguity_min_ratio = 0.0
    gt = {round(t, 3): p for t, p in read_tum(gt_path)}
    loc = Localizer(m, conf)
    t0 = time.perf_counter()
    out = localize_bag(loc, bag, topic)
    seconds = time.perf_counter() - t0
    rows = []
    for pub in out.publications:
        stamp = round(pub.stamp_ns * 1e-9, 3)
        truth = gt[stamp]
        row = {"stamp": stamp, "localized": pub.localized, "mode": pub.result.mode,
               "ambiguous": bool(pub.result.ambiguity), "prior_rejected": pub.result.prior_rejected,
               "true_room_b": in_room_b(truth.t, room_length)}
        if pub.localized:
            est = pub.map_from_cam
            row["err_m"], row["err_deg"] = pose_error(est.inverse(), truth.inverse())
            row["room_b"] = in_room_b(est.t, room_length)
        rows.append(row)
    ok = [r for r in rows if r["localized"]]
    err = np.array([(r["err_m"], r["err_deg"]) for r in ok]).reshape(-1, 2)
    wrong = [r for r in ok if r["err_m"] > 0.25 or r["err_deg"] > 5.0]
    s = {"frames": len(rows), "localized": len(ok),
         "within_25cm_2deg": int(np.sum((err[:, 0] <= 0.25) & (err[:, 1] <= 2.0))),
         "wrong": len(wrong), "wrong_stamps": [r["stamp"] for r in wrong][:10],
         "median_err_mm": float(np.median(err[:, 0]) * 1e3) if len(ok) else float("nan"),
         "median_err_deg": float(np.median(err[:, 1])) if len(ok) else float("nan"),
         "refused_ambiguous": sum(1 for r in rows if r["ambiguous"] and not r["localized"]),
         "chosen_by_prior": sum(1 for r in rows if r["ambiguous"] and r["localized"]),
         "tracks_dropped": sum(1 for r in rows if r["prior_rejected"]),
         "seconds_per_frame": seconds / max(len(rows), 1)}
    if kidnap_stamp is not None:
        after = [r for r in rows if r["stamp"] >= kidnap_stamp]
        wrong_room = [r for r in after if r["localized"] and not r["room_b"]]
        right = [r for r in after if r["localized"] and r["room_b"] and r["err_m"] <= 0.25]
        s["after_kidnap"] = len(after)
        s["wrong_room_after_kidnap"] = len(wrong_room)
        s["last_wrong_room_s"] = (wrong_room[-1]["stamp"] - kidnap_stamp) if wrong_room else None
        s["first_right_room_s"] = (right[0]["stamp"] - kidnap_stamp) if right else None
        s["wrong_room_after_first_right"] = sum(1 for r in wrong_room if right and r["stamp"] > right[0]["stamp"])
    return s


def kidnap_stamp(gt_path: Path, room_length: float) -> float:
    """The first ground-truth stamp in room B (the kidnap)."""
    for t, p in read_tum(gt_path):
        if in_room_b(p.t, room_length):
            return round(t, 3)
    raise SystemExit(f"{gt_path}: the robot never reaches room B")


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", type=Path, default=Path("/tmp/global_loc_twin_rooms"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "twin_rooms.md")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a configuration override")
    ap.add_argument("--runs", default="query,kidnap")
    ap.add_argument("--modes", default="global,tracking")
    args = ap.parse_args()
    meta, m = world_and_map(args.world, args.data)
    bags = meta["bags"]["mcap"]
    L = meta["config"]["room"][0]
    results = []
    for run_name in args.runs.split(","):
        gt_path = args.world / f"{run_name}_ground_truth_camera.tum"
        ks = kidnap_stamp(gt_path, L) if run_name == "kidnap" else None
        for tracking in [{"global": False, "tracking": True}[x] for x in args.modes.split(",")]:
            for check in (False, True):
                s = run(m, bags[run_name], bags["image_topic"], gt_path, tracking, check, L, ks, args.set)
                s.update(run=run_name, mode="tracking" if tracking else "global only",
                         check="on" if check else "off (before)")
                print(json.dumps(s))
                results.append(s)
    cols = ["run", "mode", "check", "frames", "localized", "within_25cm_2deg", "wrong", "median_err_mm",
            "refused_ambiguous", "chosen_by_prior", "tracks_dropped", "seconds_per_frame"]
    lines = ["# Twin rooms: places that look alike, before and after the ambiguity check", "",
             f"`benchmarks/twin_rooms.py`, one run, {time.strftime('%Y-%m-%d')}, this machine (2 cores, CPU). "
             f"Map: the mapping run, preset sift ({m.num_keyframes} keyframes, {m.num_points3D} points). "
             "'wrong': published poses beyond (0.25 m, 5 deg) of the truth. 'check off': "
             "`localization.ambiguity_min_ratio=0` (the strongest place wins, as before the check)."
             + (f" Overrides: `{' '.join(args.set)}`." if args.set else ""), "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in results:
        lines.append("| " + " | ".join(fmt(s[c]) for c in cols) + " |")
    kid = [s for s in results if s["run"] == "kidnap"]
    kcols = ["mode", "check", "after_kidnap", "wrong_room_after_kidnap", "last_wrong_room_s",
             "first_right_room_s", "wrong_room_after_first_right"]
    lines += ["", "Kidnap run: the robot carried from room A to the same spot in room B (odometry unaware). "
              "Times in seconds after the kidnap.", "",
              "| " + " | ".join(kcols) + " |", "|" + "---|" * len(kcols)]
    for s in kid:
        lines.append("| " + " | ".join(fmt(s[c]) for c in kcols) + " |")
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
