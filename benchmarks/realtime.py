#!/usr/bin/env python3
"""Real time on this CPU: the default preset's global query against the floor of any SIFT
pipeline (OpenCV SIFT extraction alone, same images, same run), and a robot's sequence
localized frame by frame in global-only and in tracking mode.

    python benchmarks/realtime.py [--data ../shared/data] [--world demo_out/world] [--map demo_out/map.glmap]

1. Temple ring (map: even views, queries: odd views, 24 images 640x480): each query is
   localized by a global query and, alternately, described by ``cv2.SIFT_create()`` with
   OpenCV's defaults, for ``--rounds`` rounds after a warm-up round. Printed: median and p90 of
   every stage, the SIFT extraction time, their ratio, and the accuracy.
   With ``--compare SECTION.KEY=VALUE``, a second localizer with that override on the same map is
   alternated with the first, query by query, each after its own SIFT extraction: a before and
   after in one run.
2. Robot world (the query run of ``make demo``'s world, 300 frames at 10 Hz, odometry in tf):
   localized from its bag as ``global-loc localize --bag`` does, once with ``--tracking off``
   (a global query per frame) and once with tracking; per-frame time p50/p90, recall within
   (0.25 m, 2 deg), the worst error, and the share of tracked frames. The world and its map
   are made when missing (as ``make demo`` does).

The machine is shared: compare ratios measured in one run, not absolute times across runs.
Prints markdown and writes ``benchmarks/results/realtime.md`` (figures in ``realtime.json``).
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
BOUNDS = (0.25, 2.0)


def _pct(values, q):
    return float(np.percentile(values, q)) if len(values) else float("nan")


#: ``--set SECTION.KEY=VALUE`` overrides for every localizer of the run
OVERRIDES: list[str] = []


def _conf_with_threads(conf, blas_threads):
    if blas_threads is not None and hasattr(conf, "blas_threads"):
        conf.blas_threads = blas_threads
    return conf


def temple(data: Path, rounds: int, blas_threads=None, compare=()) -> dict:
    """Global queries on the temple ring next to OpenCV SIFT extraction of the same images;
    with ``compare`` (``SECTION.KEY=VALUE`` overrides), a second localizer so configured on the
    same map, alternated with the first query by query, each after its own SIFT extraction."""
    import cv2

    from global_loc.config import load_preset
    from global_loc.geometry.transforms import pose_error
    from global_loc.features.base import to_grayscale
    from global_loc.io.images import read_image
    from global_loc.io.text import read_cameras, read_poses
    from global_loc.localizer import STAGES, Localizer
    from global_loc.pipeline import index_image_folder
    from global_loc.runtime.threads import resolve_threads, shared_thread_pool

    root = data / "temple_ring"
    poses = read_poses(root / "poses_cam_from_world.txt")
    cameras = read_cameras(root / "cameras.txt")
    num = lambda n: int(n[7:11])  # noqa: E731 - templeRNNNN.png
    map_poses = {n: p for n, p in poses.items() if num(n) % 2 == 0}
    queries = sorted(n for n in poses if num(n) % 2 == 1)
    conf = _conf_with_threads(load_preset("sift", OVERRIDES), blas_threads)
    loc = Localizer(index_image_folder(root / "images", map_poses, cameras, conf), conf)
    other = None
    if compare:
        other = Localizer(loc.map, _conf_with_threads(load_preset("sift", [*OVERRIDES, *compare]), blas_threads))
        other_times = {"total": [], "matching": [], "sift": []}
    images = {n: read_image(root / "images" / n) for n in queries}
    sift = cv2.SIFT_create()
    stage_times = {s: [] for s in STAGES}
    sift_times, ratios, errors, keypoints, gemm_times, gemm_shapes = [], [], [], [], [], []
    row = {name: i for i, name in enumerate(loc.map.names)}
    cores = resolve_threads(0)
    pool = shared_thread_pool(cores)
    for r in range(rounds + 1):  # round 0 warms up
        for n in queries:
            t = time.perf_counter()
            kp, _ = sift.detectAndCompute(to_grayscale(images[n]), None)
            t_sift = time.perf_counter() - t
            res = loc.localize(images[n], cameras[n])
            # the floor of the matching stage: the one similarity product of the query's
            # descriptors with the observations of the place that localized it (float32 BLAS,
            # operands already converted and laid out, its rows shared by one thread per core
            # as the matching shares them; nothing else)
            t_gemm = float("nan")
            if res.keyframes:
                query_desc = loc.extractor.extract(images[n]).descriptors
                db_desc, _ = loc.map.gather_observations([row[k] for k in res.keyframes])
                db_t = np.asarray(db_desc).T.astype(np.float32, order="C")
                parts = np.array_split(query_desc, cores)
                gemm = lambda: list(pool.map(lambda part: part @ db_t, parts))  # noqa: E731
                gemm()
                t = time.perf_counter()
                gemm()
                t_gemm = time.perf_counter() - t
                if r == 1:
                    gemm_shapes.append((len(query_desc), db_t.shape[1]))
            if other is not None:
                t = time.perf_counter()
                sift.detectAndCompute(to_grayscale(images[n]), None)
                t_other_sift = time.perf_counter() - t
                other_res = other.localize(images[n], cameras[n])
                if r:
                    other_times["sift"].append(t_other_sift)
                    for s in ("total", "matching"):
                        other_times[s].append(other_res.timings[s])
            if r == 0:
                continue
            sift_times.append(t_sift)
            keypoints.append(len(kp))
            gemm_times.append(t_gemm)
            for s in STAGES:
                stage_times[s].append(res.timings.get(s, 0.0))
            ratios.append(res.timings["total"] / t_sift)
            if r == 1:
                errors.append(pose_error(res.cam_from_world, poses[n]) if res.success else (np.inf, np.inf))
    e = np.array(errors)
    ok = np.isfinite(e[:, 0])
    compared = None
    if other is not None:
        med = {s: 1e3 * _pct(v, 50) for s, v in other_times.items()}
        compared = {"overrides": list(compare), "total_ms": med["total"], "matching_ms": med["matching"],
                    "sift_ms": med["sift"], "ratio_total_to_sift": med["total"] / med["sift"]}
    return {
        "compared": compared,
        "queries": len(queries),
        "rounds": rounds,
        "stages_ms": {s: {"p50": 1e3 * _pct(v, 50), "p90": 1e3 * _pct(v, 90)} for s, v in stage_times.items()},
        "sift_ms": {"p50": 1e3 * _pct(sift_times, 50), "p90": 1e3 * _pct(sift_times, 90)},
        "sift_keypoints": float(np.median(keypoints)),
        "ratio_total_to_sift": {"of_medians": _pct(stage_times["total"], 50) / _pct(sift_times, 50),
                                "median_per_image": float(np.median(ratios))},
        # the floor of this pipeline's global query: its own local features (the map's SIFT
        # settings) plus the one similarity product of its matching, with nothing else
        "gemm_ms": {"p50": 1e3 * float(np.nanmedian(gemm_times)), "p90": 1e3 * float(np.nanpercentile(gemm_times, 90))},
        "gemm_shape_median": [float(np.median([s[0] for s in gemm_shapes])),
                              float(np.median([s[1] for s in gemm_shapes]))] if gemm_shapes else None,
        "ratio_floor_to_sift": (_pct(stage_times["local_features"], 50) + float(np.nanmedian(gemm_times)))
        / _pct(sift_times, 50),
        "localized": int(ok.sum()),
        "within_1cm_1deg": int(np.sum((e[:, 0] <= 0.01) & (e[:, 1] <= 1.0))),
        "median_error_mm": float(np.median(e[ok, 0]) * 1e3) if ok.any() else float("nan"),
        "median_error_deg": float(np.median(e[ok, 1])) if ok.any() else float("nan"),
    }


def robot_world(world_dir: Path, map_path: Path, textures: Path, blas_threads=None) -> dict:
    """The robot world's query run, global-only and with tracking."""
    import cv2

    from global_loc.benchmarking import ensure_robot_world
    from global_loc.evaluation import trajectory_errors
    from global_loc.io.bags import BagReader
    from global_loc.features.base import to_grayscale
    from global_loc.io.text import read_tum
    from global_loc.localizer import Localizer, conf_for_map
    from global_loc.map.storage import read_map
    from global_loc.pipeline import localize_bag

    ensure_robot_world(world_dir, map_path, textures)
    bag = world_dir / "query_mcap"
    map_index = read_map(map_path)
    gt = read_tum(world_dir / "query_ground_truth_camera.tum")
    sift = cv2.SIFT_create()
    sift_times = []
    with BagReader(bag, "/camera/image_raw") as reader:
        for k, f in enumerate(reader.frames()):
            if k % 10 == 0:
                g = to_grayscale(f.image())
                sift.detectAndCompute(g, None)
                t = time.perf_counter()
                sift.detectAndCompute(g, None)
                sift_times.append(time.perf_counter() - t)
    out = {"sift_ms_p50": 1e3 * _pct(sift_times, 50)}
    for mode in ("global-only", "tracking"):
        conf = _conf_with_threads(conf_for_map(map_index, overrides=OVERRIDES), blas_threads)
        if hasattr(conf, "tracking"):
            conf.tracking.enabled = mode == "tracking"
        elif mode == "tracking":
            continue  # a version without tracking
        loc = Localizer(map_index, conf)
        run = localize_bag(loc, bag, "/camera/image_raw")
        est = [(p.stamp_ns * 1e-9, p.map_from_cam) for p in run.publications if p.localized]
        stamps = [p.stamp_ns * 1e-9 for p in run.publications]
        err = np.array(list(trajectory_errors(est, gt, stamps).values()))
        fin = err[np.isfinite(err[:, 0])]
        total = np.array([p.result.timings["total"] for p in run.publications]) * 1e3
        modes = [getattr(p.result, "mode", "global") for p in run.publications]
        tracked = total[[m != "global" for m in modes]]
        out[mode] = {
            "frames": len(stamps),
            "localized": len(est),
            "tracked": sum(m != "global" for m in modes),
            "flow": modes.count("flow"),
            "recall": float(np.mean((err[:, 0] <= BOUNDS[0]) & (err[:, 1] <= BOUNDS[1]))),
            "worst_m": float(fin[:, 0].max()) if len(fin) else float("nan"),
            "worst_deg": float(fin[:, 1].max()) if len(fin) else float("nan"),
            "median_error_mm": float(np.median(fin[:, 0]) * 1e3) if len(fin) else float("nan"),
            "p50_ms": _pct(total, 50),
            "p90_ms": _pct(total, 90),
            "tracked_p50_ms": _pct(tracked, 50),
        }
        print(f"  {mode}: {out[mode]}", flush=True)
    return out


def markdown(res: dict) -> str:
    t, w = res["temple"], res["robot_world"]
    lines = [f"Real time on {res['machine']}; `python benchmarks/realtime.py`, {res['date']}"
             + (f" ({res['label']})" if res.get("label") else ""), "",
             f"**Temple ring, global query (preset sift), {t['queries']} queries x {t['rounds']} rounds, "
             "alternating with OpenCV SIFT extraction (defaults) of the same image**", "",
             "| stage | p50 (ms) | p90 (ms) |", "|---|---:|---:|"]
    for s, v in t["stages_ms"].items():
        if v["p50"] > 0 or s == "total":
            lines.append(f"| {s} | {v['p50']:.1f} | {v['p90']:.1f} |")
    lines += [f"| *OpenCV SIFT extraction alone ({t['sift_keypoints']:.0f} keypoints)* | {t['sift_ms']['p50']:.1f} | "
              f"{t['sift_ms']['p90']:.1f} |", "",
              f"Global query / SIFT extraction: **{t['ratio_total_to_sift']['of_medians']:.2f}** (ratio of medians; "
              f"median of per-image ratios {t['ratio_total_to_sift']['median_per_image']:.2f}). "
              + (f"The floor of this query, its own local features (the map's SIFT settings) plus the one "
                 f"similarity product of its matching ({t['gemm_shape_median'][0]:.0f} x "
                 f"{t['gemm_shape_median'][1]:.0f} descriptors, float32 BLAS on every core, p50 "
                 f"{t['gemm_ms']['p50']:.1f} ms), "
                 f"with no retrieval, no ratio test and no PnP: **{t['ratio_floor_to_sift']:.2f}** x SIFT extraction. "
                 if t.get("gemm_shape_median") else "")
              + f"Localized {t['localized']}/{t['queries']}, {t['within_1cm_1deg']} within (1 cm, 1 deg), median "
              f"{t['median_error_mm']:.3f} mm / {t['median_error_deg']:.4f} deg.", "",
              *([f"Alternated with it query by query, after its own SIFT extraction, the same map localized with "
                 f"`{' '.join(t['compared']['overrides'])}`: global query p50 {t['compared']['total_ms']:.1f} ms "
                 f"(matching {t['compared']['matching_ms']:.1f} ms), SIFT extraction {t['compared']['sift_ms']:.1f} ms, "
                 f"ratio **{t['compared']['ratio_total_to_sift']:.2f}**; the default's ratio on its own SIFT times "
                 f"above: {t['ratio_total_to_sift']['of_medians']:.2f}.", ""] if t.get("compared") else []),
              f"**Robot world query run from its bag (300 frames, 640x480, 10 Hz)**; OpenCV SIFT extraction of its "
              f"frames: p50 {w['sift_ms_p50']:.1f} ms", "",
              "| mode | localized | tracked (of which by optical flow) | within (0.25 m, 2 deg) | worst error | "
              "median error | per frame p50 / p90 (ms) | tracked frames p50 (ms) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode in ("global-only", "tracking"):
        if mode in w:
            m = w[mode]
            lines.append(f"| {mode} | {m['localized']}/{m['frames']} | {m['tracked']} ({m.get('flow', 0)}) | "
                         f"{100 * m['recall']:.1f} % | "
                         f"{m['worst_m']:.3f} m, {m['worst_deg']:.2f} deg | {m['median_error_mm']:.1f} mm | "
                         f"{m['p50_ms']:.1f} / {m['p90_ms']:.1f} | {m['tracked_p50_ms']:.1f} |")
    if "tracking" in w and "global-only" in w:
        lines += ["", f"Tracking / global-only, per-frame p50: **{w['tracking']['p50_ms'] / w['global-only']['p50_ms']:.2f}**."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--world", type=Path, default=ROOT / "demo_out" / "world")
    ap.add_argument("--map", type=Path, default=ROOT / "demo_out" / "map.glmap")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds over the temple queries")
    ap.add_argument("--label", default="", help="a note for the table (e.g. the commit)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="override the preset's blas_threads (0: the libraries' default, a thread per core)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override an option of every localizer (e.g. matching.threads=1); repeatable")
    ap.add_argument("--compare", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="also time, alternated query by query on the temple, a localizer with this override "
                         "(e.g. matching.threads=1: matching in the calling thread alone); repeatable")
    ap.add_argument("--parts", nargs="+", choices=["temple", "robot_world"], default=["temple", "robot_world"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--name", default="", help="file name of the results, without extension (default realtime)")
    args = ap.parse_args()

    res = {"machine": f"{platform.node() or 'this machine'}, {os.cpu_count()} cores",
           "date": time.strftime("%Y-%m-%d"), "label": args.label}
    if args.blas_threads is not None:
        res["label"] = (res["label"] + ", " if res["label"] else "") + f"blas_threads {args.blas_threads}"
    OVERRIDES[:] = args.set
    if args.set:
        res["label"] = (res["label"] + ", " if res["label"] else "") + ", ".join(args.set)
    if "temple" in args.parts:
        print("temple ring ...", flush=True)
        res["temple"] = temple(args.data, args.rounds, args.blas_threads, args.compare)
    if "robot_world" in args.parts:
        print("robot world ...", flush=True)
        res["robot_world"] = robot_world(args.world, args.map, args.data, args.blas_threads)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or "realtime"
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1))
    if len(args.parts) == 2:
        text = markdown(res)
        print(text)
        (args.out / f"{stem}.md").write_text(text)
    else:
        print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
