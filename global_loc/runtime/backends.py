"""Inference backends: PyTorch (CPU, CUDA, fp16 on CUDA) and ONNX Runtime (CPU, CUDA and
TensorRT execution providers).

Every learned model is split into a *dense network* (an ``nn.Module`` from an image tensor
to dense maps, the part worth accelerating and exporting) and a post-processing step in
PyTorch shared by all backends (keypoint selection, descriptor sampling). A
:class:`DenseRunner` runs the dense network on the chosen backend; ``global-loc export``
writes it as ONNX with a dynamic image size.

PyTorch is an optional dependency, imported when a learned model is used: the default
pipeline (SIFT + VLAD) needs no torch.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, GlobalLocError
from .weights import WeightsError, source_hint

logger = logging.getLogger(__name__)


def require_torch():
    """Import torch, or fail with an install hint."""
    try:
        import torch
    except ImportError:
        raise GlobalLocError(
            "learned models need PyTorch: pip install torch (CPU-only machines: "
            "pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        ) from None
    return torch


def select_device(device: str = "auto"):
    """``torch.device`` for ``auto`` (CUDA where available, else CPU), ``cpu`` or ``cuda[:N]``;
    ``cuda`` without a GPU falls back to the CPU with a warning."""
    torch = require_torch()
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("device '%s' asked for, but CUDA is not available: running on the CPU", device)
        return torch.device("cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device '{device}'; use auto, cpu or cuda") from None


def onnx_cache_dir() -> Path:
    root = os.environ.get("GLOBAL_LOC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "global_loc")
    p = Path(root) / "onnx"
    p.mkdir(parents=True, exist_ok=True)
    return p


def export_onnx(module, example, path: str | os.PathLike, input_names: Sequence[str],
                output_names: Sequence[str], dynamic_hw: bool = True, opset: int = 17) -> Path:
    """Export a dense network to ONNX with a dynamic batch and image size.

    Args:
        module: the ``nn.Module`` (in eval mode).
        example: an example input tensor (B, C, H, W).
    """
    torch = require_torch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch"}
    if dynamic_hw:
        axes.update({2: "height", 3: "width"})
    dynamic = {input_names[0]: axes}
    with torch.inference_mode():
        outs = module.cpu().eval()(example.cpu())
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    for o, t in zip(output_names, outs):  # spatial outputs follow the image size, others only the batch
        spatial = dynamic_hw and t.ndim == 4
        dynamic[o] = {0: "batch", 2: f"{o}_height", 3: f"{o}_width"} if spatial else {0: "batch"}
    tmp = path.with_name(path.name + ".part")
    # The TorchScript-based exporter: the torch.export one cannot trace the shape arithmetic
    # that keeps the deformable convolution's image size dynamic. The tests compare every
    # export with PyTorch.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module.cpu().eval(), example.cpu(), str(tmp), input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic, opset_version=opset,
                          dynamo=False)
    os.replace(tmp, path)
    return path


PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def onnx_session(path: str | os.PathLike, device: str = "auto", tensorrt: bool = True,
                 cache_dir: str | os.PathLike | None = None):
    """An ONNX Runtime session with the best available execution provider.

    The order is TensorRT (with engine caching in ``cache_dir``), CUDA, CPU; ``device='cpu'``
    uses the CPU only. Providers that are not available are skipped, and the choice is logged.

    Raises:
        GlobalLocError: onnxruntime is not installed.
        WeightsError: ``path`` is not a readable ONNX model (truncated, or another kind of file).
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise GlobalLocError("the onnxruntime backend needs onnxruntime: pip install onnxruntime "
                             "(or onnxruntime-gpu for CUDA and TensorRT)") from None
    available = ort.get_available_providers()
    wanted = ["CPUExecutionProvider"] if device == "cpu" else [
        p for p in PROVIDER_ORDER if tensorrt or p != "TensorrtExecutionProvider"]
    providers = []
    for p in wanted:
        if p not in available:
            continue
        if p == "TensorrtExecutionProvider":
            cache = Path(cache_dir or onnx_cache_dir() / "trt")
            cache.mkdir(parents=True, exist_ok=True)
            providers.append((p, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                                  "trt_fp16_enable": False}))
        else:
            providers.append(p)
    skipped = [p for p in wanted if p not in available]
    if skipped and device != "cpu":
        logger.info("onnxruntime: %s not available; using %s", ", ".join(skipped),
                    ", ".join(p if isinstance(p, str) else p[0] for p in providers))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"cannot load ONNX model {path} ({first_line}); it is truncated or not an ONNX "
                           f"file{source_hint(Path(path).name)}") from None
    return session


class DenseRunner:
    """Runs a dense network with PyTorch or ONNX Runtime and returns torch tensors.

    Args:
        module: the PyTorch dense network (weights loaded).
        name: a name for the exported file (with the weights' checksum, so a cached export
            belongs to these weights).
        input_name, output_names: names of the ONNX graph's input and outputs.
        backend: ``torch`` or ``onnxruntime``.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: ``fp32``, or ``fp16`` (PyTorch on CUDA only; ignored on the CPU).
        onnx_path: an exported model to use (default: export to the cache on first use).
    """

    def __init__(self, module, name: str, input_name: str, output_names: Sequence[str],
                 backend: str = "torch", device: str = "auto", precision: str = "fp32",
                 onnx_path: str | os.PathLike | None = None):
        torch = require_torch()
        self.torch = torch
        self.module = module.eval()
        self.name = name
        self.input_name = input_name
        self.output_names = list(output_names)
        self.backend = backend
        self.device = select_device(device)
        self._buffers: dict = {}
        if precision not in ("fp32", "fp16"):
            raise ConfigError(f"precision must be fp32 or fp16, got '{precision}'")
        self.half = precision == "fp16" and self.device.type == "cuda"
        if precision == "fp16" and not self.half:
            logger.info("fp16 runs on CUDA only; %s runs in fp32 on the CPU", name)
        if backend == "torch":
            self.module.to(self.device)
            if self.half:
                self.module.half()
        elif backend == "onnxruntime":
            path = Path(onnx_path) if onnx_path else self._cached_export()
            self.session = onnx_session(path, "cpu" if self.device.type == "cpu" else "auto")
        else:
            raise ConfigError(f"unknown backend '{backend}'; use torch or onnxruntime")

    def _cached_export(self) -> Path:
        digest = hashlib.sha256()
        for k, v in self.module.state_dict().items():
            digest.update(k.encode())
            digest.update(v.detach().cpu().numpy().tobytes())
        path = onnx_cache_dir() / f"{self.name}-{digest.hexdigest()[:12]}.onnx"
        if not path.exists():
            logger.info("exporting %s to %s", self.name, path)
            example = self.torch.zeros(1, self.module.in_channels, 128, 128)
            export_onnx(self.module, example, path, [self.input_name], self.output_names)
        return path

    def __call__(self, x):
        """Run on a (B, C, H, W) float32 tensor; returns the outputs as float32 torch tensors
        on :attr:`device`."""
        torch = self.torch
        if self.backend == "torch":
            with torch.inference_mode():
                # one input buffer per shape on the device, reused: no allocation per query
                dtype = torch.float16 if self.half else torch.float32
                buf = self._buffers.get((tuple(x.shape), dtype))
                if buf is None:
                    buf = self._buffers[(tuple(x.shape), dtype)] = torch.empty(x.shape, dtype=dtype, device=self.device)
                    if len(self._buffers) > 8:  # keep a few sizes only
                        self._buffers.pop(next(iter(self._buffers)))
                buf.copy_(x, non_blocking=True)
                out = self.module(buf)
            out = out if isinstance(out, (tuple, list)) else (out,)
            return tuple(o.float() for o in out)
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        outs = self.session.run(self.output_names, {self.input_name: arr})
        return tuple(torch.from_numpy(o).to(self.device) for o in outs)
