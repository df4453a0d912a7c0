#!/usr/bin/env python3
"""A robot's stream into the launched localizer: the robot world's query run (640x480 rgb8)
played in a loop into ``ros2 launch global_loc localize.launch.py``, for a set time per run:
frames in, poses out, recall, latency from an image's arrival to its pose's (p50/p90/max), the
localizer process's CPU and memory (RSS) over the run, and the node's own counters.

    python benchmarks/stream.py [--runs 10x1 30x1 10x3] [--minutes 10] [--world demo_out/world]

A run ``HZxS`` plays a query run recorded with an HZ camera at S times its speed: ``10x1`` is
the recorded 10 Hz, ``30x1`` a 30 Hz camera on the same robot (its own world and map, made
once next to ``--world``), ``10x3`` the 10 Hz run at 3x (30 frames a second, but the robot
three times as fast: three times the motion per frame of ``30x1``, and the image-time periods,
such as the global query's, pass three times as often). Everything runs on this computer: the
player (``global-loc replay``) and the listener share its cores with the node, as a camera
driver and a navigation stack would. Worlds and maps are made when missing (as ``make demo``
does). Prints a markdown table and writes it to ``benchmarks/results/<name>.md`` (and the
figures to ``<name>.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=["10x1", "30x1", "10x3"], metavar="HZxSPEED",
                    help="camera rate of the recording x replay speed")
    ap.add_argument("--minutes", type=float, default=10.0, help="replay time per rate")
    ap.add_argument("--world", type=Path, default=ROOT / "demo_out" / "world")
    ap.add_argument("--map", type=Path, default=ROOT / "demo_out" / "map.glmap")
    ap.add_argument("--textures", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--workspace", type=Path, default=ROOT / "demo_out" / "ws")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--set", nargs="+", default=[], metavar="PARAM=VALUE",
                    help="node parameters over config/localizer.yaml (e.g. queue_size=3)")
    ap.add_argument("--name", default="stream", help="results file name (without extension)")
    ap.add_argument("--from-json", type=Path, default=None, help="only print the table of a saved run")
    args = ap.parse_args()
    if args.from_json is not None:
        print(_table(json.loads(args.from_json.read_text()), args.from_json.stem))
        return 0

    import rclpy

    from global_loc.benchmarking import ensure_robot_world
    from global_loc.io.text import read_tum
    from global_loc.ros.live import run_live

    runs = []
    for item in args.runs:
        hz, speed = (float(x) for x in item.lower().split("x"))
        world, map_path = ((args.world, args.map) if hz == 10.0 else
                           (args.world.parent / f"{args.world.name}_{hz:g}hz",
                            args.world.parent / f"{args.world.name}_{hz:g}hz" / "map.glmap"))
        ensure_robot_world(world, map_path, args.textures, query_rate_hz=hz)
        runs.append((hz, speed, world, map_path))
    os.environ.setdefault("ROS_DOMAIN_ID", "59")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    launch_args = {}
    if args.set:
        import yaml

        conf = yaml.safe_load((ROOT / "config" / "localizer.yaml").read_text())
        for item in args.set:
            key, value = item.split("=", 1)
            conf["/**"]["ros__parameters"][key] = yaml.safe_load(value)
        params = args.out / f"{args.name}_params.yaml"
        args.out.mkdir(parents=True, exist_ok=True)
        params.write_text(yaml.safe_dump(conf))
        launch_args["params_file"] = str(params)
    rows = []
    rclpy.init()
    try:
        for hz, rate, world, map_path in runs:
            t0 = time.monotonic()
            gt = read_tum(world / "query_ground_truth_base.tum")
            report, res, rec = run_live(map_path, world / "query_mcap", gt, args.workspace, rate,
                                        duration_s=60.0 * args.minutes, thresholds=[(0.25, 2.0)],
                                        launch_args=launch_args)
            # the localizer's last diagnostics: where the frames that got no pose went
            counters = next((values for _, name, _, _, values in reversed(rec.diagnostics)
                             if "localizer" in name and "dropped_queue" in values), {})
            ok_of_poses = report.recall[0] * report.frames / max(report.poses, 1)
            rows.append({
                "recorded_hz": hz, "speed": rate, "frames_per_s": hz * rate, "wall_s": time.monotonic() - t0,
                "frames_in": report.frames, "poses_out": report.poses,
                "poses_per_frame": report.poses / max(report.frames, 1),
                "recall_frames": report.recall[0], "recall_poses": ok_of_poses,
                "map_odom_recall_frames": report.map_odom_recall[0],
                "latency_p50_ms": report.percentile_ms(50), "latency_p90_ms": report.percentile_ms(90),
                "latency_max_ms": report.percentile_ms(100), **res,
                "node_counters": {k: v for k, v in counters.items()
                                  if k.startswith(("frames", "localized", "dropped", "input", "latency_", "rate_hz"))},
            })
            print(f"{hz:g} Hz x {rate:g}: {report.format()}\n  {res}\n  node: {rows[-1]['node_counters']}", flush=True)
    finally:
        rclpy.try_shutdown()
    header = (f"Stream into `localize.launch.py` (preset sift), robot world query runs looped, "
              f"{args.minutes:g} min per run" + (f", {' '.join(args.set)}" if args.set else "")
              + f"; {platform.node()}, {os.cpu_count()} cores; "
              f"`python benchmarks/stream.py`, {time.strftime('%Y-%m-%d')}\n")
    text = header + "\n" + _table(rows)

    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text(text)
    (args.out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    return 0 if all(r["clean_exit"] for r in rows) else 1


def _table(rows: list[dict], _name: str = "") -> str:
    """The markdown table of the runs."""
    table = ["| camera, replay speed | frames in (per s) | poses out | within (0.25 m, 2°) of poses | latency p50 / p90 / max (ms) "
             "| node CPU (median, % of a core) | node RSS start → end, max (MiB) | RSS slope, 2nd half "
             "(MiB/min) | Ctrl-C |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        table.append(
            f"| {r['recorded_hz']:g} Hz" + (f", x{r['speed']:g} ({r['frames_per_s']:g} frames/s)" if r['speed'] != 1 else "")
            + f" | {r['frames_in']} ({r['frames_in'] / max(r.get('duration_s', 0), 1e-9):.1f}/s) | {r['poses_out']} "
            f"({100 * r['poses_per_frame']:.1f} %) "
            f"| {100 * r['recall_poses']:.1f} % | {r['latency_p50_ms']:.0f} / {r['latency_p90_ms']:.0f} / "
            f"{r['latency_max_ms']:.0f} | {r.get('cpu_percent_median', float('nan')):.0f} "
            f"| {r.get('rss_start_mib', float('nan')):.0f} → {r.get('rss_end_mib', float('nan')):.0f}, "
            f"{r.get('rss_max_mib', float('nan')):.0f} | {r.get('rss_slope_mib_per_min', float('nan')):+.2f} "
            f"| {'clean' if r['clean_exit'] else 'exit %s' % r['exit_status']} |")
    return "\n".join(table) + "\n"


if __name__ == "__main__":
    sys.exit(main())
