"""Timing on the target machine, as hierarchical_loc's ``time_query`` did for the Jetson TX2:
warm-up, then the median and 90th percentile of every localization stage, the peak memory of
the host and of the GPU, and a header with the device and library versions."""
from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .evaluation import format_timing_table, timing_table
from .io.images import read_image
from .io.text import read_cameras
from .localizer import STAGES, Localizer, conf_for_map
from .map.storage import read_map

TIME_QUERY_STAGES = STAGES


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "cpu") -> dict[str, str]:
    """The machine and the versions of the libraries that do the work."""
    import cv2
    import faiss
    import pycolmap

    from . import __version__

    env = {
        "cpu": f"{_cpu_name()} ({os.cpu_count()} logical CPUs)",
        "python": platform.python_version(),
        "global_loc": __version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "faiss": faiss.__version__,
        "pycolmap": pycolmap.__version__,
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except ImportError:
        env["torch"] = "not installed"
    try:
        import onnxruntime

        env["onnxruntime"] = f"{onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())})"
    except ImportError:
        env["onnxruntime"] = "not installed"
    env["device"] = device
    return env


def format_header(header: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in header.items())


def _gpu_peak_mib() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def run_time_query(map_path, images, queries, preset=None, overrides=(), models_dir=None, device=None,
                   backend=None, max_num_queries: int = 0, warmup: int = 3, progress: bool = False) -> dict:
    """Time the localization of the queries of an hloc query list against a map.

    Args:
        backend: ``torch`` or ``onnxruntime`` for the learned models (``None``: the preset's).
        max_num_queries: time at most this many queries (after ``warmup`` untimed ones).
    Returns:
        A report dict: ``header``, ``stages`` (median/p90 ms per stage), ``table_markdown``,
        ``memory``, ``timed``, ``localized``.
    """
    map_index = read_map(map_path)
    overrides = list(overrides)
    conf = conf_for_map(map_index, preset, overrides, models_dir, device)
    if backend:
        for section in ("features", "global_descriptor"):
            model = getattr(conf, section)
            if model.get("name") not in ("sift", "vlad"):
                model["backend"] = backend
    localizer = Localizer(map_index, conf)
    cams = read_cameras(queries)
    names = list(cams)
    images = Path(images)

    def run(name):
        t0 = time.perf_counter()
        image = read_image(images / name)
        return localizer.localize(image, cams[name], timings={"decode": time.perf_counter() - t0})

    for name in names[:warmup]:
        run(name)
    timed = names[warmup:] if len(names) > warmup else names
    if max_num_queries:
        timed = timed[:max_num_queries]
    results = [run(n) for n in tqdm(timed, desc="timing", disable=not progress, unit="query")]
    table = timing_table([r.timings for r in results], TIME_QUERY_STAGES)
    lines = format_timing_table(table).splitlines()
    if not any(line.startswith("| refinement |") for line in lines):  # no feature-metric refinement configured
        lines.insert(len(lines) - 1, "| refinement | - | - |")
    dev = getattr(getattr(localizer.extractor, "runner", None), "device", None)
    header = environment(str(dev) if dev is not None else "cpu")
    header.update({
        "preset": conf.name,
        "local features": f"{conf.features.get('name')} ({conf.features.get('backend', 'opencv')})",
        "global descriptor": f"{conf.global_descriptor.get('name')} ({conf.global_descriptor.get('backend', 'faiss')})",
        "map": map_index.summary(),
        "queries": f"{len(results)} timed after {min(warmup, len(names))} warm-up",
    })
    memory = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    gpu = _gpu_peak_mib()
    if gpu is not None:
        memory["gpu_peak_mib"] = gpu
    return {
        "header": header,
        "stages": table,
        "table_markdown": "\n".join(lines),
        "memory": memory,
        "timed": len(results),
        "localized": sum(r.success for r in results),
    }


def write_table(lines: list[str], out: Path) -> None:
    """Print a benchmark's markdown ``lines`` and write them to ``out`` (its folder made)."""
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def ensure_robot_world(world_dir: Path, map_path: Path, textures: Path | None = None,
                       query_rate_hz: float = 10.0) -> None:
    """Make ``make demo``'s robot world in ``world_dir`` and its map at ``map_path`` where they
    are missing (``global-loc synth``, then ``global-loc index`` of the mapping run's bag), for
    the benchmarks that replay it; ``query_rate_hz``: the query run's camera rate.

    Raises:
        RuntimeError: a command that failed.
    """
    from .cli.main import main as cli

    world_dir, map_path = Path(world_dir), Path(map_path)
    if not (world_dir / "world.json").exists():
        tex = ["--textures", str(textures)] if textures is not None and Path(textures).is_dir() else []
        if cli(["-q", "synth", "--out", str(world_dir), "--query-rate", str(query_rate_hz)] + tex) != 0:
            raise RuntimeError(f"global-loc synth --out {world_dir} failed")
    if not map_path.exists():
        if cli(["-q", "index", "--bag", str(world_dir / "mapping_mcap"), "--image-topic", "/camera/image_raw",
                "--out", str(map_path)]) != 0:
            raise RuntimeError(f"global-loc index of {world_dir / 'mapping_mcap'} failed")
