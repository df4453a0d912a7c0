"""What learned local and global models share: the options that choose how a network runs
(:class:`RuntimeOptions`), loading the weights, and the identity recorded in a map."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .backends import DenseRunner, require_torch
from .weights import check_file, find_weights


@dataclass
class RuntimeOptions:
    """Options that change how a network runs, not what it computes (left out of a map's
    record of the model, so a map built with PyTorch localizes with ONNX Runtime).

    Attributes:
        backend: ``torch`` or ``onnxruntime``.
        precision: ``fp32``, or ``fp16`` (PyTorch on CUDA).
        onnx: an exported network for ``onnxruntime`` (default: exported into the cache on
            first use, see ``global-loc export``).
    """

    backend: str = field(default="torch", metadata={"runtime": True})
    precision: str = field(default="fp32", metadata={"runtime": True})
    onnx: str = field(default="", metadata={"runtime": True})


def identity_conf(conf) -> dict:
    """A model configuration without its runtime options, with the weight file by name."""
    d = dataclasses.asdict(conf)
    for f in dataclasses.fields(conf):
        if f.metadata.get("runtime"):
            d.pop(f.name)
    if "weights" in d:
        d["weights"] = Path(d["weights"]).name
    return d


class LearnedModel:
    """Mixin of learned models: subclasses implement ``build_network`` and ``load_weights``
    and call :meth:`_load` from their constructor."""

    def _load(self, device: str, models_dir, output_names: Sequence[str]) -> None:
        self.torch = require_torch()
        self.weights_path = find_weights(self.conf.weights, models_dir)
        check_file(self.weights_path)
        net = self.build_network()
        self.load_weights(net, self.weights_path)
        if not hasattr(net, "in_channels"):
            net.in_channels = getattr(self, "in_channels", 3)
        self.network = net.eval()
        self.runner = DenseRunner(net, f"{self.name}-{Path(self.conf.weights).stem}", "image", output_names,
                                  backend=self.conf.backend, device=device, precision=self.conf.precision,
                                  onnx_path=self.conf.onnx or None)

    def identity_conf(self) -> dict:
        return identity_conf(self.conf)

    def build_network(self):
        raise NotImplementedError

    def load_weights(self, net, path: Path) -> None:
        raise NotImplementedError
