#!/usr/bin/env python3
"""Ctrl-C, as a terminal sends it, to ``ros2 launch`` of each node, 20 times in a row: SIGINT to
the whole process group (launch and the node at once; launch then forwards another), once or
twice, at a random moment while the robot world's runs play into the node. Every trial must end
with ``ros2 launch`` exiting 0 and the node "finished cleanly".

    python benchmarks/ctrl_c.py [--trials 20] [--world demo_out/world]

Prints a table and writes it to ``benchmarks/results/ctrl_c.md``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--world", type=Path, default=ROOT / "demo_out" / "world")
    ap.add_argument("--map", type=Path, default=ROOT / "demo_out" / "map.glmap")
    ap.add_argument("--textures", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--workspace", type=Path, default=ROOT / "demo_out" / "ws")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    from global_loc.benchmarking import ensure_robot_world
    from global_loc.ros.workspace import LaunchedProcess, colcon_build, ctrl_c_trials, ros_env

    ensure_robot_world(args.world, args.map, args.textures)
    env = ros_env(colcon_build(args.workspace), int(os.environ.get("ROS_DOMAIN_ID", "61")))
    scratch = Path(tempfile.mkdtemp(prefix="gl_ctrl_c_"))
    cases = [("localize.launch.py", "query_mcap", {"map": str(args.map), "use_sim_time": "true"}, r"active: localizing"),
             ("index_map.launch.py", "mapping_mcap", {"map": str(scratch / "indexed.glmap"), "use_sim_time": "true"},
              r"indexing /camera")]
    rows, all_clean = [], True
    for launch_file, run, arguments, ready in cases:
        player = LaunchedProcess([str(Path(sys.executable).parent / "global-loc"), "replay", "--bag",
                                  str(args.world / run), "--loops", "0"], env=env)
        try:
            trials = ctrl_c_trials(env, launch_file, arguments, args.trials, ready, seed=0,
                                   log=lambda m: print(f"{launch_file}: {m}", flush=True))
        finally:
            player.stop()
        bad = [t for t in trials if not t["clean"]]
        all_clean &= not bad
        for k, t in enumerate(bad):
            print("\n".join(t["tail"]))
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"ctrl_c_{launch_file.split('.')[0]}_unclean_{k}.log").write_text("\n".join(t["tail"]) + "\n")
        rows.append(f"| `{launch_file}` | {len(trials)} | {sum(t['signals'] == 2 for t in trials)} "
                    f"| {len(trials) - len(bad)} | {', '.join(str(t['exit_status']) for t in bad) or '-'} |")
    text = (f"Ctrl-C (SIGINT to the process group, 1 or 2 at random, 0.2-1.5 s after start-up, frames "
            f"playing); {platform.node()}, {os.cpu_count()} cores; `python benchmarks/ctrl_c.py`, "
            f"{time.strftime('%Y-%m-%d')}\n\n| launch file | trials | of which double Ctrl-C | clean exits "
            f"| exit statuses otherwise |\n|---|---:|---:|---:|---|\n" + "\n".join(rows) + "\n")
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ctrl_c.md").write_text(text)
    return 0 if all_clean else 1


if __name__ == "__main__":
    sys.exit(main())
