"""Retrieval at city scale: exact against approximate keyframe search (issue: maps at city scale).

Prints and saves (``benchmarks/results/scale.md`` and ``.json``), in one run, for synthetic maps
of 10 k, 100 k and 1 M keyframes (256-d global descriptors, the size ``pca_dims`` gives): the
time of one query (p50, p99; one thread, as the localizer runs it), recall@1 and recall@10 of each
query's known true keyframe, the overlap of the top 10 with exact search's, the index's build time
(all cores) and size, for ``flat`` (exact, ``IndexFlatIP``), ``hnsw`` and ``ivfpq``
(:mod:`global_loc.retrieval.index`, default options).

The descriptors: keyframes drawn around "places" (a place's keyframes are as alike as a robot's
neighbouring keyframes: cosine about 0.67), queries are perturbed copies of 300 keyframes (cosine
to their true keyframe about 0.7 at ``--noise 0.06``), so that each query has one known true
neighbour among similar ones. Sanity check on real descriptors: the robot world's map (215
keyframes, VLAD 8192-d) with each approximate index forced on it, and its 300 query frames: how
much of each query's exact top 10 the index returns. (Hiding them among the 1 M synthetic ones
after a random projection to 256-d says nothing: the projection leaves a real query's best
keyframe at cosine 0.29, no more than the best of a million random vectors.)

Map opening: the robot world's map (215 keyframes) tiled into a 10 k-keyframe map (its
keyframes, observations and points repeated, ids and names made unique), written once; then, each
in a fresh process: ``read_map`` (time, RSS), a ``Localizer`` on it (time, RSS) and its first
query (a robot-world query frame).

Indexing throughput: ``global-loc index --bag`` of the robot world's mapping run (491 frames, 215
keyframes), each run a fresh process, engines alternated, ``--indexing-reps`` rounds: in this
process (``--workers 1``), 2 worker processes (``--workers 2``, the default on 2 cores) and Ray
(``--ray``: a Ray instance started on this machine, its start included). Keyframes per second of
the whole command (start-up included) and of its own timer, the build (matching, triangulation,
...) apart. In the same run, the floor the per-keyframe work sets: the median time of that work
(OpenCV SIFT, RootSIFT, dense samples) and of OpenCV SIFT alone on one core, over the run's
frames, and the keyframes per second that gives with every core busy and nothing else to do.

Run: ``.venv/bin/python benchmarks/scale.py [--sizes 10000 100000 1000000] [--no-robot]
[--open-keyframes 10000] [--indexing-reps 2]``; ``--only-indexing`` runs the indexing part alone
(``results/scale_indexing.md``), ``--only-open`` the map-opening part (``results/scale_open.md``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import faiss
import numpy as np

from global_loc.retrieval.index import RetrievalIndex, train_index

ROOT = Path(__file__).resolve().parent


def clustered(n: int, dim: int, rng, place_size: int = 20, spread: float = 0.7) -> np.ndarray:
    places = rng.standard_normal((n // place_size + 1, dim), dtype=np.float32)
    x = places[rng.integers(0, len(places), n)]
    x += spread * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def perturbed(x: np.ndarray, rows: np.ndarray, noise: float, rng) -> np.ndarray:
    q = x[rows] + noise * rng.standard_normal((len(rows), x.shape[1]), dtype=np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def time_queries(index: RetrievalIndex, q: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) results and (N,) seconds of one query at a time."""
    out, times = [], []
    index.search(q[0], k)  # warm up
    for v in q:
        t = time.perf_counter()
        _, idx = index.search(v, k)
        times.append(time.perf_counter() - t)
        out.append(idx[0])
    return np.array(out), np.array(times)


def run_size(n: int, dim: int, noise: float, num_queries: int, seed: int, threads: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    x = clustered(n, dim, rng)
    truth = rng.choice(n, num_queries, replace=False)
    q = perturbed(x, truth, noise, rng)
    print(f"{n} keyframes: drawn in {time.perf_counter() - t:.1f} s", flush=True)
    rows_out, exact_top = [], None
    for kind in ("flat", "hnsw", "ivfpq"):
        faiss.omp_set_num_threads(threads)
        t = time.perf_counter()
        trained = train_index(kind, x)
        build_s = time.perf_counter() - t
        faiss.omp_set_num_threads(1)
        index = RetrievalIndex(x, "cpu", trained)
        top, times = time_queries(index, q)
        if kind == "flat":
            exact_top = top
        r = {"keyframes": n, "dim": dim, "noise": noise, "index": kind,
             "p50_ms": round(1e3 * float(np.median(times)), 3), "p99_ms": round(1e3 * float(np.percentile(times, 99)), 3),
             "recall@1": round(float(np.mean(top[:, 0] == truth)), 4),
             "recall@10": round(float(np.mean([truth[i] in top[i] for i in range(len(q))])), 4),
             "overlap_with_exact@10": round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, exact_top)])), 4),
             "build_s": round(build_s, 2),
             "index_mib": round((len(trained.data) if trained is not None else x.nbytes) / 2**20, 1),
             "params": trained.params if trained is not None else {}}
        print(json.dumps(r), flush=True)
        rows_out.append(r)
    return rows_out


def robot_check(world: Path, map_path: Path, data: Path) -> list[dict]:
    """The robot world's own map and query descriptors: each approximate index against exact."""
    from global_loc.benchmarking import ensure_robot_world
    from global_loc.io.bags import BagReader
    from global_loc.localizer import Localizer
    from global_loc.map.storage import read_map

    ensure_robot_world(world, map_path, data)
    m = read_map(map_path)
    loc = Localizer(m)
    queries = []
    with BagReader(world / "query_mcap", "/camera/image_raw") as reader:
        for f in reader.frames():
            img = f.image()
            queries.append(loc.global_model(img, loc.extractor.extract(img)))
    queries = np.stack(queries)
    x = m.global_descriptors
    out, exact = [], None
    for kind in ("flat", "hnsw", "ivfpq"):
        top, times = time_queries(RetrievalIndex(x, "cpu", train_index(kind, x)), queries)
        if kind == "flat":
            exact = top
        s = {"index": kind, "keyframes": len(x), "dim": int(x.shape[1]), "queries": len(queries),
             "overlap_with_exact@10": round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, exact)])), 4),
             "same_top1": round(float(np.mean(top[:, 0] == exact[:, 0])), 4),
             "p50_ms": round(1e3 * float(np.median(times)), 3)}
        print("robot world:", json.dumps(s), flush=True)
        out.append(s)
    return out


def tiled_map(map_path: Path, num_keyframes: int, out: Path) -> Path:
    """The map at ``map_path`` repeated to ``num_keyframes`` keyframes, written to ``out``."""
    import dataclasses

    from global_loc.map.index import MapIndex
    from global_loc.map.storage import read_map, write_map

    m = read_map(map_path)
    reps = -(-num_keyframes // m.num_keyframes)
    k, p = m.num_keyframes, m.num_points3D

    def tile(a):
        return np.concatenate([a] * reps)

    obs_counts = np.diff(m.obs_offsets)
    offsets = np.zeros(k * reps + 1, np.int64)
    np.cumsum(np.tile(obs_counts, reps), out=offsets[1:])
    fields = {f.name: getattr(m, f.name) for f in dataclasses.fields(MapIndex)}
    fields.update(
        keyframe_ids=np.arange(k * reps, dtype=np.int64), names=[f"{r}/{n}" for r in range(reps) for n in m.names],
        stamps=tile(m.stamps), q_wxyz=tile(m.q_wxyz), t=tile(m.t), camera_index=tile(m.camera_index),
        global_descriptors=tile(m.global_descriptors), obs_offsets=offsets, obs_keypoints=tile(m.obs_keypoints),
        obs_descriptors=tile(m.obs_descriptors),
        obs_point_index=np.concatenate([m.obs_point_index + r * p for r in range(reps)]),
        point_ids=np.arange(p * reps, dtype=np.int64), points_xyz=tile(m.points_xyz), points_rgb=tile(m.points_rgb),
        points_error=tile(m.points_error),
        point_features=None if m.point_features is None else tile(m.point_features),
        free_offsets=None, free_keypoints=None, free_descriptors=None, retrieval_index=None)
    tiled = MapIndex(**fields)
    tiled.point_covariances(np.zeros(0, np.int64))  # as the map builder does: kept in the file
    write_map(tiled, out)
    return out


_OPEN_PROBE = """
import json, resource, sys, time
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize() / 2**20
import numpy as np
from global_loc.io.bags import BagReader
from global_loc.localizer import Localizer
from global_loc.map.storage import read_map
base = rss()
t = time.perf_counter(); m = read_map(sys.argv[1]); t_open = time.perf_counter() - t
after_open = rss()
t = time.perf_counter(); loc = Localizer(m); t_loc = time.perf_counter() - t
after_loc = rss()
with BagReader(sys.argv[2], "/camera/image_raw") as r:
    f = next(iter(r.frames())); img, cam = f.image(), f.camera
t = time.perf_counter(); res = loc.localize(img, cam); t_q = time.perf_counter() - t
# the value checks of read_map (global_loc.map.validate) once more, on the pages now in memory
from global_loc.map.validate import check_values
stored = m.stored_point_covariances()
arrays = {k: getattr(m, k) for k in ("q_wxyz", "t", "camera_index", "obs_offsets", "obs_point_index", "obs_keypoints",
                                     "points_xyz", "free_offsets", "free_keypoints", "names")}
arrays.update(point_covariances=None if stored is None else stored[0],
              point_noise_px=None if stored is None else np.array([stored[1]]))
t = time.perf_counter(); check_values(arrays, len(m.cameras), m.global_state, sys.argv[1]); t_checks = time.perf_counter() - t
print(json.dumps({"keyframes": m.num_keyframes, "observations": m.num_observations, "open_s": t_open,
                  "checks_s": t_checks, "points": m.num_points3D,
                  "rss_open_mib": after_open - base, "localizer_s": t_loc, "rss_localizer_mib": after_loc - base,
                  "first_query_s": t_q, "rss_first_query_mib": rss() - base, "localized": res.success}))
"""


def map_open(world: Path, map_path: Path, data: Path, num_keyframes: int, tmp: Path) -> dict:
    """Open time and memory of a tiled map of ``num_keyframes`` keyframes, in a fresh process."""
    import subprocess
    import sys

    from global_loc.benchmarking import ensure_robot_world

    ensure_robot_world(world, map_path, data)
    out = tmp / f"tiled_{num_keyframes}.glmap"
    t = time.perf_counter()
    tiled_map(map_path, num_keyframes, out)
    write_s = time.perf_counter() - t
    subprocess.run(["sync"], check=False)
    res = subprocess.run([sys.executable, "-c", _OPEN_PROBE, str(out), str(world / "query_mcap")],
                         capture_output=True, text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    r.update(file_mib=round(out.stat().st_size / 2**20, 1), write_s=round(write_s, 1))
    print("map open:", json.dumps(r), flush=True)
    out.unlink()
    return r


def indexing_throughput(world: Path, map_path: Path, data: Path, reps: int, tmp: Path,
                        baseline: Path | None = None) -> dict:
    """``global-loc index --bag`` of the robot world's mapping run with each engine, alternated,
    and the per-keyframe floor (see the module docstring)."""
    import re
    import statistics
    import subprocess
    import sys

    import cv2

    from global_loc.benchmarking import ensure_robot_world
    from global_loc.config import load_preset
    from global_loc.io.bags import BagReader
    from global_loc.map.storage import read_map
    from global_loc.map.workers import KeyframeExtractor
    from global_loc.runtime.threads import available_cores

    ensure_robot_world(world, map_path, data)
    bag = world / "mapping_mcap"
    gl = str(Path(sys.executable).parent / "global-loc")
    engines = {"1 process (`--workers 1`)": ["--workers", "1"],
               "2 worker processes (`--workers 2`)": ["--workers", "2"],
               "Ray, local instance (`--ray`)": ["--ray"]}
    env = {}
    if baseline is not None:  # an older checkout of global_loc, run from its own tree
        import os

        rev = subprocess.run(["git", "-C", str(baseline), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        name = f"before: global_loc {rev}, its default engine"
        engines = {name: [], **engines}
        env[name] = {**os.environ, "PYTHONPATH": str(baseline)}
    runs = {k: [] for k in engines}
    out = tmp / "scale_indexing.glmap"
    # the floor, measured in every round (the machine's speed drifts): the per-keyframe work on
    # one core over 40 of the run's frames
    with BagReader(bag, "/camera/image_raw") as reader:
        frames = [f.image() for k, f in enumerate(reader.frames()) if k % 12 == 0][:40]
    ke = KeyframeExtractor(load_preset("sift"))
    per_kf, sift = [], []
    for rep in range(reps):
        cv2.setNumThreads(1)
        for img in frames:
            t = time.perf_counter()
            ke.extract(img)
            per_kf.append(time.perf_counter() - t)
            grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            t = time.perf_counter()
            ke.extractor._sift.detectAndCompute(grey, None)
            sift.append(time.perf_counter() - t)
        for name, extra in engines.items():
            cmd = [sys.executable, "-m", "global_loc.cli.main"] if name in env else [gl]
            t = time.perf_counter()
            res = subprocess.run([*cmd, "-q", "index", "--bag", str(bag.resolve()), "--image-topic",
                                  "/camera/image_raw", "--out", str(out.resolve()), *extra], capture_output=True,
                                 text=True, check=True, env=env.get(name), cwd=baseline if name in env else None)
            wall = time.perf_counter() - t
            built = float(re.search(r"built in ([0-9.]+) s", res.stdout).group(1))
            m = read_map(out)
            st = m.metadata["stats"]
            r = {"wall_s": wall, "timer_s": built, "keyframes": m.num_keyframes, "points": m.num_points3D,
                 "extraction_s": m.metadata["source"].get("indexing", {}).get("extraction_s"),
                 "build_s": st["build_seconds"], "stages": st.get("stage_seconds", {}),
                 "engine": m.metadata["source"].get("indexing", {"engine": "inline", "workers": 1})}
            runs[name].append(r)
            print(f"indexing, {name}, round {rep + 1}: {json.dumps(r)}", flush=True)
    out.unlink(missing_ok=True)
    cv2.setNumThreads(-1)
    cores = available_cores()
    summary = []
    for name, rs in runs.items():
        n = rs[0]["keyframes"]
        summary.append({"engine": name, "workers": rs[0]["engine"]["workers"], "keyframes": n,
                        "points": rs[0]["points"],
                        "wall_s": statistics.median(r["wall_s"] for r in rs),
                        "timer_s": statistics.median(r["timer_s"] for r in rs),
                        "build_s": statistics.median(r["build_s"] for r in rs),
                        "extraction_s": (statistics.median(r["extraction_s"] for r in rs)
                                         if rs[0]["extraction_s"] is not None else None)})
        summary[-1]["kf_per_s_wall"] = n / summary[-1]["wall_s"]
        summary[-1]["kf_per_s_timer"] = n / summary[-1]["timer_s"]
    floor = {"cores": cores, "frames": len(per_kf), "per_keyframe_ms": 1e3 * statistics.median(per_kf),
             "sift_ms": 1e3 * statistics.median(sift)}
    floor["kf_per_s_bound"] = cores / (floor["per_keyframe_ms"] / 1e3)
    floor["kf_per_s_bound_sift"] = cores / (floor["sift_ms"] / 1e3)
    return {"runs": runs, "summary": summary, "floor": floor, "reps": reps}


def indexing_markdown(ix: dict) -> list[str]:
    f = ix["floor"]
    lines = ["", f"Indexing the robot world's mapping bag ({ix['summary'][0]['keyframes']} keyframes of 491 frames) "
             f"with `global-loc index --bag`, each run a fresh process, engines alternated, median of {ix['reps']} "
             f"rounds, {f['cores']} cores:", "",
             "| engine | keyframes/s (whole command) | wall | keyframes/s (its timer) | per-keyframe work | build | points |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in ix["summary"]:
        ex = "-" if r["extraction_s"] is None else f"{r['extraction_s']:.1f} s"
        lines.append(f"| {r['engine']} | **{r['kf_per_s_wall']:.1f}** | {r['wall_s']:.1f} s | {r['kf_per_s_timer']:.1f} | "
                     f"{ex} | {r['build_s']:.1f} s | {r['points']:,} |")
    base = ix["summary"][0]["wall_s"]
    lines += ["", "Speed-up against the first row: " + ", ".join(
        f"{r['engine'].split(' (')[0]} {base / r['wall_s']:.2f}x" for r in ix["summary"][1:]) + ".",
        "", "Per-keyframe work: from the first frame read to the last keyframe's features back (bag reading, "
        "worker start-up included); build: matching, triangulation, principal points, assembly (one process).",
        "", f"The floor, measured in each round: the per-keyframe work (SIFT, RootSIFT, dense samples) takes "
        f"{f['per_keyframe_ms']:.0f} ms on one core (median of {f['frames']} timings), OpenCV SIFT alone "
        f"{f['sift_ms']:.0f} ms; with {f['cores']} cores busy and nothing else to do that is at most "
        f"{f['kf_per_s_bound']:.1f} keyframes/s ({f['kf_per_s_bound_sift']:.1f} for SIFT alone)."]
    return lines


def markdown(rows: list[dict], robot: list[dict], threads: int, opened: dict | None = None,
             indexing: dict | None = None) -> str:
    lines = ["# Retrieval at scale (`benchmarks/scale.py`)", "",
             f"Synthetic 256-d descriptors, 300 queries, one query at a time on one thread; builds on {threads} "
             "threads. recall@N: the query's true keyframe among the first N; overlap: of the exact top 10.", "",
             "| keyframes | index | p50 | p99 | recall@1 | recall@10 | overlap with exact | build | size |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    if not rows:
        lines = lines[:2]
    for r in rows:
        lines.append(f"| {r['keyframes']:,} | {r['index']} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
                     f"{100 * r['recall@1']:.1f} % | {100 * r['recall@10']:.1f} % | "
                     f"{100 * r['overlap_with_exact@10']:.1f} % | {r['build_s']:.1f} s | {r['index_mib']:.0f} MiB |")
    if robot:
        lines += ["", f"The robot world's own map ({robot[0]['keyframes']} keyframes, VLAD {robot[0]['dim']}-d) and its "
                  f"{robot[0]['queries']} query frames, each index forced on it:", "",
                  "| index | overlap with exact top 10 | same top 1 | p50 |", "|---|---:|---:|---:|"]
        for r in robot:
            lines.append(f"| {r['index']} | {100 * r['overlap_with_exact@10']:.1f} % | {100 * r['same_top1']:.1f} % | "
                         f"{r['p50_ms']:.2f} ms |")
    if opened:
        o = opened
        lines += ["", f"Opening a map of {o['keyframes']:,} keyframes ({o['observations']:,} observations, "
                  f"{o['file_mib']:.0f} MiB; the robot world's map tiled), each step in a fresh process:", "",
                  "| step | time | RSS added |", "|---|---:|---:|",
                  f"| `read_map` (memory-mapped; its directory and value checks included) | {o['open_s']:.2f} s | "
                  f"{o['rss_open_mib']:.0f} MiB |",
                  *([f"| of which the value checks ({o['points']:,} points; timed again once the pages are read) | "
                     f"{o['checks_s']:.2f} s | |"] if "checks_s" in o else []),
                  f"| `Localizer(map)` | {o['localizer_s']:.2f} s | {o['rss_localizer_mib']:.0f} MiB in all |",
                  f"| first query (localized: {o['localized']}) | {o['first_query_s']:.2f} s | "
                  f"{o['rss_first_query_mib']:.0f} MiB in all |"]
    if indexing:
        lines += indexing_markdown(indexing)
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--noise", type=float, default=0.06)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2, help="threads for building the indexes")
    ap.add_argument("--no-robot", action="store_true", help="skip the real-descriptor check")
    ap.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data")
    ap.add_argument("--world", type=Path, default=ROOT.parent / "demo_out" / "world")
    ap.add_argument("--map", type=Path, default=ROOT.parent / "demo_out" / "map.glmap")
    ap.add_argument("--open-keyframes", type=int, default=10_000, help="size of the tiled map opened (0: skip)")
    ap.add_argument("--tmp", type=Path, default=Path("/tmp"), help="folder for the tiled map")
    ap.add_argument("--indexing-reps", type=int, default=2, help="rounds of the indexing runs (0: skip)")
    ap.add_argument("--only-indexing", action="store_true", help="the indexing part alone (results/scale_indexing)")
    ap.add_argument("--baseline", type=Path, help="an older checkout of global_loc to index with too (git worktree)")
    ap.add_argument("--out", type=Path, default=None, help="results stem (default results/scale)")
    ap.add_argument("--only-open", action="store_true", help="the map-opening part alone (results/scale_open)")
    args = ap.parse_args()
    if args.only_open:
        opened = map_open(args.world, args.map, args.data, args.open_keyframes or 10_000, args.tmp)
        out = args.out or ROOT / "results" / "scale_open"
        out.with_suffix(".json").write_text(json.dumps(opened, indent=1))
        md = markdown([], [], args.threads, opened).replace("# Retrieval at scale (`benchmarks/scale.py`)",
                                                           "# Opening a large map (`benchmarks/scale.py --only-open`)")
        out.with_suffix(".md").write_text(md)
        print(md)
        return
    if args.only_indexing:
        ix = indexing_throughput(args.world, args.map, args.data, max(1, args.indexing_reps), args.tmp, args.baseline)
        out = args.out or ROOT / "results" / "scale_indexing"
        out.with_suffix(".json").write_text(json.dumps(ix, indent=1))
        md = "\n".join(["# Indexing throughput (`benchmarks/scale.py --only-indexing`)"] + indexing_markdown(ix)) + "\n"
        out.with_suffix(".md").write_text(md)
        print(md)
        return
    args.out = args.out or ROOT / "results" / "scale"
    rows = []
    for n in args.sizes:
        rows += run_size(n, args.dim, args.noise, args.queries, 0, args.threads)
    faiss.omp_set_num_threads(args.threads)
    robot = [] if args.no_robot else robot_check(args.world, args.map, args.data)
    opened = map_open(args.world, args.map, args.data, args.open_keyframes, args.tmp) if args.open_keyframes else None
    indexing = (indexing_throughput(args.world, args.map, args.data, args.indexing_reps, args.tmp, args.baseline)
                if args.indexing_reps else None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "robot": robot, "map_open": opened,
                                                         "indexing": indexing}, indent=1))
    md = markdown(rows, robot, args.threads, opened, indexing)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
