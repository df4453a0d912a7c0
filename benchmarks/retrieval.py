#!/usr/bin/env python3
"""Place recognition alone: recall@N of each global descriptor on the project's data.

    python benchmarks/retrieval.py [--data ../shared/data] [--world demo_out/world]
        [--map demo_out/map.glmap] [--positive 0.25,15]

For each data set and global descriptor, a map is built (the default preset with that
descriptor) and every query retrieves its 20 nearest keyframes (``Localizer.retrieve``: the
first step of a global query). recall@N (``global_loc.retrieval.recall``): the share of the
queries with a positive keyframe (within ``--positive`` metres and degrees of viewing
direction of the true pose; ``--robot-positive`` for the robot world) that have one among their
N first retrieved. The descriptors:

- ``vlad``: the default, VLAD over RootSIFT with a 64-word vocabulary learned from the map
  (8192 dimensions, exact inner-product search);
- ``vlad + PCA``: the same, PCA-whitened to half the number of keyframes (at most 256; learned
  from the map's keyframes, as ``global_descriptor.pca_dims`` does);
- the learned ones (NetVLAD, MobileNetVLAD, HF-Net) need weights that ``../shared/weights``
  does not hold; they are listed as not run.

Data: temple ring and dino (map: even views, queries: odd views), Maupertuis (each of the 4
photos against a map of the other three; its COLMAP model has no metric scale, so its
positives are the keyframes within ``--maupertuis-angle`` degrees of viewing direction, at any
distance), and the robot world (``make demo``'s map and query run, 300 frames).

Writes ``benchmarks/results/retrieval.md`` (figures in ``retrieval.json``) and a recall@N plot
``retrieval.png``.
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
from global_loc.io.images import read_image  # noqa: E402
from global_loc.io.text import read_cameras, read_poses  # noqa: E402
from global_loc.localizer import Localizer  # noqa: E402
from global_loc.pipeline import index_image_folder  # noqa: E402
from global_loc.retrieval.recall import evaluate_retrieval, parse_positive, plot_recall  # noqa: E402

NS = (1, 5, 10, 20)
LEARNED = ("netvlad", "mobilenetvlad", "hfnet")


def _conf(pca_dims: int):
    return load_preset("sift", [f"global_descriptor.pca_dims={pca_dims}"])


def _pca_dims(num_keyframes: int) -> int:
    return int(min(256, num_keyframes // 2))


def _retrieve_all(m, conf, images: dict[str, np.ndarray]):
    loc = Localizer(m, conf)
    out, times = {}, []
    for name, img in images.items():
        t = time.perf_counter()
        out[name] = loc.retrieve(img, max(NS))
        times.append(time.perf_counter() - t)
    return out, float(np.median(times) * 1e3)


def _row(dataset, descriptor, dims, report, ms):
    d = report.to_dict()
    return {"dataset": dataset, "descriptor": descriptor, "dims": dims, "queries": d["num_queries"],
            "with_positives": d["num_with_positives"], "recall": d["recall"], "ms_p50": ms,
            "positive": d["positive"], "report": report}


def ring(data: Path, name: str, positive) -> list[dict]:
    """Temple or dino: map of the even views, queries the odd views."""
    root = data / name
    poses = read_poses(root / "poses_cam_from_world.txt")
    cams = read_cameras(root / "cameras.txt")
    digits = (lambda n: int(n[len("templeR"):len("templeR") + 4])) if name == "temple_ring" else (lambda n: int(n[4:8]))
    map_poses = {n: p for n, p in poses.items() if digits(n) % 2 == 0}
    queries = {n: read_image(root / "images" / n) for n in cams if digits(n) % 2 == 1}
    rows = []
    for pca in (False, True):
        dims = _pca_dims(len(map_poses)) if pca else 0
        conf = _conf(dims)
        m = index_image_folder(root / "images", map_poses, cams, conf)
        retrieved, ms = _retrieve_all(m, conf, queries)
        kf = {n: m.cam_from_world(i) for i, n in enumerate(m.names)}
        rep = evaluate_retrieval(retrieved, {n: poses[n] for n in queries}, kf, *positive, NS)
        rows.append(_row(name.split("_")[0], "vlad + PCA" if pca else "vlad", dims or m.global_descriptors.shape[1],
                         rep, ms))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "report"}), flush=True)
    return rows


def maupertuis(data: Path, angle_deg: float) -> list[dict]:
    from global_loc.io.colmap import read_colmap_model
    from global_loc.pipeline import index_colmap_model

    root = data / "maupertuis_colmap"
    model = read_colmap_model(root / "reconstruction")
    conf = _conf(0)
    retrieved, truth, kf, times = {}, {}, {}, []
    for q in model.keyframes:
        m = index_colmap_model(root / "reconstruction", root / "images", conf, exclude=[q.name])
        got, ms = _retrieve_all(m, conf, {q.name: read_image(root / "images" / q.name)})
        retrieved.update(got)
        times.append(ms)
        truth[q.name] = q.cam_from_world
        kf.update({n: m.cam_from_world(i) for i, n in enumerate(m.names)})
    # leave one out: each query's own map lacks it, so its retrieval never names it
    rep = evaluate_retrieval(retrieved, truth, kf, float("inf"), angle_deg, NS)
    row = _row("Maupertuis", "vlad", 8192, rep, float(np.median(times)))
    print(json.dumps({k: v for k, v in row.items() if k != "report"}), flush=True)
    return [row]


def robot_world(world: Path, map_path: Path, data: Path, positive) -> list[dict]:
    from global_loc.benchmarking import ensure_robot_world
    from global_loc.io.bags import BagReader
    from global_loc.io.text import read_tum
    from global_loc.cli.main import main as cli
    from global_loc.map.storage import read_map

    ensure_robot_world(world, map_path, data)
    gt = read_tum(world / "query_ground_truth_camera.tum")
    stamps = np.array([s for s, _ in gt])
    images, truth = {}, {}
    with BagReader(world / "query_mcap", "/camera/image_raw", map_frame="map") as reader:
        for f in reader.frames():
            key = f"{f.stamp:.9f}"
            images[key] = f.image()
            truth[key] = gt[int(np.argmin(np.abs(stamps - f.stamp)))][1].inverse()
    rows = []
    m = read_map(map_path)
    for pca in (False, True):
        dims = _pca_dims(m.num_keyframes) if pca else 0
        conf = _conf(dims)
        mp = m
        if pca:  # the demo's map again (global-loc index, as make demo runs it), PCA-whitened
            path = map_path.with_name(f"{map_path.stem}_pca{dims}.glmap")
            if cli(["-q", "index", "--bag", str(world / "mapping_mcap"), "--image-topic", "/camera/image_raw",
                    "--out", str(path), "--set", f"global_descriptor.pca_dims={dims}"]) != 0:
                raise RuntimeError("global-loc index with PCA failed")
            mp = read_map(path)
        retrieved, ms = _retrieve_all(mp, conf, images)
        kf = {n: mp.cam_from_world(i) for i, n in enumerate(mp.names)}
        rep = evaluate_retrieval(retrieved, truth, kf, *positive, NS)
        rows.append(_row("robot world", "vlad + PCA" if pca else "vlad", dims or mp.global_descriptors.shape[1], rep, ms))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "report"}), flush=True)
    return rows


def markdown(res: dict) -> str:
    lines = [f"Place recognition on {res['machine']}; `python benchmarks/retrieval.py`, {res['date']}", "",
             "recall@N: share of the queries with a positive keyframe that retrieved one among their N "
             f"first. Positive: within {res['positive'][0]:g} m and {res['positive'][1]:g} deg of viewing "
             f"direction of the query's true pose (robot world: {res['robot_positive'][0]:g} m, "
             f"{res['robot_positive'][1]:g} deg; Maupertuis, unscaled: within {res['maupertuis_angle']:g} deg, "
             "any distance). Time: the query's local features, global descriptor and search, median.", "",
             "| data | descriptor | dims | queries (with a positive) | " + " | ".join(f"recall@{n}" for n in NS)
             + " | time per query |",
             "|---|---|---:|---:|" + "---:|" * len(NS) + "---:|"]
    for r in res["rows"]:
        rec = " | ".join("-" if r["recall"][f"@{n}"] is None else f"{100 * r['recall'][f'@{n}']:.1f} %" for n in NS)
        lines.append(f"| {r['dataset']} | {r['descriptor']} | {r['dims']} | {r['queries']} ({r['with_positives']}) "
                     f"| {rec} | {r['ms_p50']:.0f} ms |")
    lines += ["", "Not run (no weights in `../shared/weights`): " + ", ".join(LEARNED) + ".",
              "-: fewer keyframes retrieved than N only because the map has fewer than N."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--world", type=Path, default=ROOT / "demo_out" / "world")
    ap.add_argument("--map", type=Path, default=ROOT / "demo_out" / "map.glmap")
    ap.add_argument("--positive", default="0.25,15", help="temple and dino: METRES,DEGREES (default 0.25,15)")
    ap.add_argument("--robot-positive", default="1,30",
                    help="robot world: METRES,DEGREES (default 1,30: its query run does not retrace the "
                         "mapping run's path; within 0.25 m, 15 deg only 3 %% of its frames have a positive)")
    ap.add_argument("--maupertuis-angle", type=float, default=45.0)
    ap.add_argument("--skip", nargs="*", default=[], choices=["temple", "dino", "maupertuis", "robot"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrieval.md")
    args = ap.parse_args()
    positive = parse_positive(args.positive)
    rows = []
    if "temple" not in args.skip:
        rows += ring(args.data, "temple_ring", positive)
    if "dino" not in args.skip:
        rows += ring(args.data, "dino_subset", positive)
    if "maupertuis" not in args.skip:
        rows += maupertuis(args.data, args.maupertuis_angle)
    if "robot" not in args.skip:
        rows += robot_world(args.world, args.map, args.data, parse_positive(args.robot_positive))
    res = {"machine": f"{platform.node() or 'this machine'}, {os.cpu_count()} cores",
           "date": time.strftime("%Y-%m-%d"), "positive": positive, "robot_positive": parse_positive(args.robot_positive),
           "maupertuis_angle": args.maupertuis_angle,
           "rows": rows}
    text = markdown(res)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    plot_recall(args.out.with_suffix(".png"), {f"{r['dataset']}, {r['descriptor']}": r["report"] for r in rows})
    args.out.with_suffix(".json").write_text(json.dumps(
        {**res, "rows": [{k: v for k, v in r.items() if k != "report"} for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
