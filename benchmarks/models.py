#!/usr/bin/env python3
"""Time every model at 640x480 on every available backend and write a markdown table.

Local features are timed end to end (``extract``: preprocessing, network, keypoint selection,
descriptor sampling) where the published weights are at hand (``--weights``); the models whose
weights are not available here (SuperPoint, HF-Net, NetVLAD, MobileNetVLAD, GeM) are timed as
networks with random weights of the published sizes, which takes the same time. Backends: PyTorch
and ONNX Runtime on the CPU, and on CUDA (PyTorch fp32 and fp16, ONNX Runtime CUDA / TensorRT)
where a GPU is present. Medians and 90th percentiles over ``--runs`` after ``--warmup``.

    python benchmarks/models.py [--weights ../shared/weights] [--runs 10] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def timeit(fn, runs: int, warmup: int, sync=None) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        if sync:
            sync()
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts)), float(np.percentile(ts, 90))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=ROOT.parent / "shared" / "weights")
    ap.add_argument("--image", type=Path, default=ROOT.parent / "shared" / "data" / "temple_ring" / "images" / "templeR0010.png")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--only", nargs="*", default=None, help="model names to time")
    args = ap.parse_args()

    import cv2
    import torch

    from global_loc.benchmarking import environment
    from global_loc.features import create_extractor
    from global_loc.io.images import read_image
    from global_loc.nets.hfnet import HFNetNet, MobileNetVLADNet
    from global_loc.retrieval.gem import GeMNet
    from global_loc.retrieval.netvlad import NetVLADNet
    from global_loc.runtime.backends import DenseRunner
    from global_loc.features.superpoint import SuperPointNet

    image = read_image(args.image) if args.image.exists() else np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    image = cv2.resize(image, (640, 480))
    cuda = torch.cuda.is_available()
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        providers = []
    backends = [("torch", "cpu", "fp32")]
    if "CPUExecutionProvider" in providers:
        backends.append(("onnxruntime", "cpu", "fp32"))
    if cuda:
        backends += [("torch", "cuda", "fp32"), ("torch", "cuda", "fp16")]
        if "CUDAExecutionProvider" in providers or "TensorrtExecutionProvider" in providers:
            backends.append(("onnxruntime", "cuda", "fp32"))
    sync = torch.cuda.synchronize if cuda else None

    local = [
        ("aliked-t16", {"name": "aliked", "variant": "aliked-t16"}),
        ("aliked-n16", {"name": "aliked", "variant": "aliked-n16"}),
        ("aliked-n32", {"name": "aliked", "variant": "aliked-n32"}),
        ("r2d2 (single scale)", {"name": "r2d2", "multiscale": False}),
        ("r2d2 (multi-scale)", {"name": "r2d2", "multiscale": True}),
        ("faster2d2", {"name": "r2d2", "weights": "faster2d2_WASF_N16.pt", "multiscale": False}),
        ("xfeat", {"name": "xfeat"}),
    ]
    networks = [  # (name, module factory, input channels, input shape)
        ("superpoint (network)", SuperPointNet, 1),
        ("hfnet (network, local+global)", lambda: HFNetNet(0.75, 32, 4096), 1),
        ("mobilenetvlad (network)", lambda: MobileNetVLADNet(0.35, 64, 4096), 1),
        ("netvlad (network, VGG16)", lambda: NetVLADNet(64, 4096), 3),
        ("gem (network, VGG16)", GeMNet, 3),
    ]
    rows = []
    for name, conf in local:
        if args.only and name.split()[0] not in args.only:
            continue
        for backend, device, precision in backends:
            if conf["name"] == "xfeat" and backend != "onnxruntime":
                continue
            c = dict(conf)
            if conf["name"] != "xfeat":
                c.update(backend=backend, precision=precision)
            try:
                ex = create_extractor(c, device=device, models_dir=args.weights)
            except Exception as e:  # missing weights or provider: report and go on
                rows.append((name, "published", backend, device, precision, None, None, str(e).splitlines()[0][:60]))
                continue
            med, p90 = timeit(lambda: ex.extract(image), args.runs, args.warmup, sync)
            n = len(ex.extract(image))
            rows.append((name, "published", backend, device, precision, med, p90, f"{n} keypoints"))
            print(rows[-1], flush=True)
    for name, factory, ch in networks:
        if args.only and name.split()[0] not in args.only:
            continue
        module = factory().eval()
        x = torch.rand(1, ch, 480, 640)
        for backend, device, precision in backends:
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    import os

                    os.environ["GLOBAL_LOC_CACHE"] = tmp
                    runner = DenseRunner(module, name.split()[0], "image", ("out",), backend, device, precision)
                    med, p90 = timeit(lambda: runner(x), args.runs, args.warmup, sync)
            except Exception as e:
                rows.append((name, "random", backend, device, precision, None, None, str(e).splitlines()[0][:60]))
                continue
            rows.append((name, "random", backend, device, precision, med, p90, ""))
            print(rows[-1], flush=True)

    env = environment("cuda" if cuda else "cpu")
    lines = [f"# Models at 640x480 ({datetime.date.today().isoformat()})", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", "| model | weights | backend | device | precision | median (ms) | p90 (ms) | note |",
              "|---|---|---|---|---|---:|---:|---|"]
    for r in rows:
        med = f"{r[5]:.1f}" if r[5] is not None else "-"
        p90 = f"{r[6]:.1f}" if r[6] is not None else "-"
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {med} | {p90} | {r[7]} |")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "gpu" if cuda else "cpu"
    (args.out / f"models_{tag}.md").write_text(text + "\n")
    (args.out / f"models_{tag}.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    print(f"\nsaved {args.out}/models_{tag}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
