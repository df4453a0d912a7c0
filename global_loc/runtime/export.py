"""``global-loc export``: the dense networks of a preset's learned models as ONNX files."""
from __future__ import annotations

import os
from pathlib import Path

from ..config import PipelineConf
from ..features import create_extractor
from ..retrieval import create_global_model
from .backends import export_onnx, onnx_session, require_torch


def _dense_models(conf: PipelineConf):
    out = []
    models_dir = conf.models_dir or None
    ex = create_extractor(conf.features, device="cpu", models_dir=models_dir)
    if hasattr(ex, "runner"):  # learned with a PyTorch network (XFeat is an ONNX file already)
        out.append(ex.runner)
    gm = create_global_model(conf.global_descriptor, device="cpu", models_dir=models_dir)
    if hasattr(gm, "runner") and not (conf.features.get("name") == "hfnet" and gm.name == "hfnet"):
        out.append(gm.runner)  # HF-Net's global output comes with its local network
    return out


def export_preset(conf: PipelineConf, out_dir: str | os.PathLike, check: bool = False):
    """Export each learned network of ``conf`` (dynamic batch and image size).

    Returns:
        ``[(path, largest |ONNX Runtime - PyTorch| on a 480x640 test input or None)]``.
    """
    torch = require_torch()
    out_dir = Path(out_dir)
    written = []
    for runner in _dense_models(conf):
        path = out_dir / f"{runner.name}.onnx"
        c = runner.module.in_channels
        export_onnx(runner.module, torch.zeros(1, c, 128, 128), path, [runner.input_name], runner.output_names)
        diff = None
        if check:
            x = torch.rand(1, c, 480, 640, generator=torch.Generator().manual_seed(0))
            session = onnx_session(path, "cpu")
            ort_out = session.run(runner.output_names, {runner.input_name: x.numpy()})
            with torch.inference_mode():
                ref = runner.module.cpu()(x)
            ref = ref if isinstance(ref, (tuple, list)) else (ref,)
            diff = max(float(abs(o - r.numpy()).max()) for o, r in zip(ort_out, ref))
        written.append((path, diff))
    return written
