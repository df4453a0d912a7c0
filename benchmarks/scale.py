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

Run: ``.venv/bin/python benchmarks/scale.py [--sizes 10000 100000 1000000] [--no-robot]``.
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


def markdown(rows: list[dict], robot: list[dict], threads: int) -> str:
    lines = ["# Retrieval at scale (`benchmarks/scale.py`)", "",
             f"Synthetic 256-d descriptors, 300 queries, one query at a time on one thread; builds on {threads} "
             "threads. recall@N: the query's true keyframe among the first N; overlap: of the exact top 10.", "",
             "| keyframes | index | p50 | p99 | recall@1 | recall@10 | overlap with exact | build | size |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
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
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "scale")
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        rows += run_size(n, args.dim, args.noise, args.queries, 0, args.threads)
    faiss.omp_set_num_threads(args.threads)
    robot = [] if args.no_robot else robot_check(args.world, args.map, args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "robot": robot}, indent=1))
    md = markdown(rows, robot, args.threads)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
