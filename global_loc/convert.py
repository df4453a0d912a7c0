"""``global-loc convert``: the TensorFlow 1 releases of MobileNetVLAD and HF-Net to PyTorch.

The conversion reads the variables of the released checkpoint or SavedModel (with
TensorFlow, an optional dependency used only here), maps their names to the PyTorch modules of
:mod:`global_loc.nets.hfnet`, transposes the filters (HWIO -> OIHW; depthwise HWC1 -> C1HW;
dense IO -> OI) and writes ``{"format", "conf", "state_dict"}`` with ``torch.save``. The
architecture's sizes (input channels, depth multiplier, clusters, projection, descriptor size)
are read from the variables' shapes. Outer variable scopes and optimizer slots are ignored.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import GlobalLocError, InputError
from .nets.mobilenet_v2 import make_divisible
from .runtime.backends import require_torch
from .runtime.weights import WeightsError

FORMATS = {"mobilenetvlad": "global_loc/mobilenetvlad-v1", "hfnet": "global_loc/hfnet-v1"}
DEPTH_MULTIPLIERS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def read_tf_variables(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All variables of a TF checkpoint prefix (``model.ckpt``) or SavedModel folder.

    Raises:
        GlobalLocError: TensorFlow is not installed, or the path is neither.
    """
    try:
        import tensorflow as tf
    except ImportError:
        raise GlobalLocError("converting TensorFlow checkpoints needs TensorFlow: pip install tensorflow "
                             "(only `global-loc convert` uses it)") from None
    path = Path(path)
    prefix = path / "variables" / "variables" if (path / "saved_model.pb").exists() else path
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as e:
        raise InputError(f"{path} is not a TensorFlow checkpoint or SavedModel: {e}") from None
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


class _Variables:
    """Look variables up by their name's ending, ignoring outer scopes and optimizer slots."""

    def __init__(self, variables: dict[str, np.ndarray], source: str):
        self.vars = {k: np.asarray(v) for k, v in variables.items()
                     if not any(s in k for s in ("/Adam", "/Momentum", "/RMSProp", "ExponentialMovingAverage",
                                                  "global_step"))}
        self.source = source

    def find(self, suffix: str, required: bool = True):
        hits = [k for k in self.vars if k == suffix or k.endswith("/" + suffix)]
        if len(hits) > 1:
            raise WeightsError(f"{self.source}: several variables end with '{suffix}': {hits[:3]}")
        if not hits:
            if required:
                raise WeightsError(f"{self.source} has no variable '{suffix}'; it is not the expected "
                                   "MobileNetVLAD / HF-Net release")
            return None
        return self.vars[hits[0]]


def infer_conf(model: str, v: _Variables) -> dict:
    """The architecture sizes from the variables' shapes."""
    first = v.find("MobilenetV2/Conv/weights")
    last = v.find("MobilenetV2/expanded_conv_16/project/weights")
    dm = [d for d in DEPTH_MULTIPLIERS if make_divisible(32 * d) == first.shape[-1]
          and make_divisible(320 * d) == last.shape[-1]]
    if not dm:
        raise WeightsError(f"{v.source}: no depth multiplier gives the layer sizes {first.shape[-1]} and "
                           f"{last.shape[-1]}")
    clusters = v.find("vlad/memberships/weights").shape[-1]
    red = v.find("dimensionality_reduction/weights", required=False)
    conf = {"depth_multiplier": dm[0], "clusters": int(clusters),
            "reduction": int(red.shape[-1]) if red is not None else 0, "in_channels": int(first.shape[2])}
    if model == "hfnet":
        conf["descriptor_dim"] = int(v.find("local_head/descriptor/Conv_1/weights").shape[-1])
    return conf


def build_net(model: str, conf: dict):
    from .nets.hfnet import HFNetNet, MobileNetVLADNet

    if model == "hfnet":
        return HFNetNet(conf["depth_multiplier"], conf["clusters"], conf["reduction"], conf["descriptor_dim"],
                        conf["in_channels"])
    if model == "mobilenetvlad":
        return MobileNetVLADNet(conf["depth_multiplier"], conf["clusters"], conf["reduction"], conf["in_channels"])
    raise InputError(f"unknown model '{model}' to convert; use {', '.join(FORMATS)}")


def torch_checkpoint_from_tf(model: str, variables: dict[str, np.ndarray], source: str = "checkpoint") -> dict:
    """The PyTorch checkpoint of ``model`` (``mobilenetvlad`` or ``hfnet``) from TF variables.

    Raises:
        WeightsError: a variable that is missing or of the wrong shape.
    """
    from .nets.hfnet import tf_name_map

    torch = require_torch()
    v = _Variables(variables, source)
    conf = infer_conf(model, v)
    net = build_net(model, conf)
    expected = net.state_dict()
    to_tf = {t: f for f, t in tf_name_map(net).items()}
    state = {}
    for name, tensor in expected.items():
        if name.endswith("num_batches_tracked"):
            state[name] = tensor.clone()
            continue
        tf_name = to_tf.get(name)
        if tf_name is None:
            raise WeightsError(f"no TF variable maps to {name}")
        arr = v.find(tf_name, required=not name.endswith(".weight") or "bn" not in name)
        if arr is None:  # slim batch norm without scale: gamma is 1
            state[name] = torch.ones_like(tensor)
            continue
        if arr.ndim == 4 and tf_name.endswith("depthwise_weights"):
            arr = arr.transpose(2, 3, 0, 1)
        elif arr.ndim == 4:
            arr = arr.transpose(3, 2, 0, 1)
        elif arr.ndim == 5:  # clusters (1, 1, 1, K, D)
            arr = arr.reshape(arr.shape[-2], arr.shape[-1])
        elif arr.ndim == 2:  # dense (in, out)
            arr = arr.T
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if tuple(t.shape) != tuple(tensor.shape):
            raise WeightsError(f"{source}: {tf_name} has shape {tuple(t.shape)} once converted, "
                               f"{name} needs {tuple(tensor.shape)}")
        state[name] = t
    net.load_state_dict(state, strict=True)
    return {"format": FORMATS[model], "conf": conf, "state_dict": state}


def convert(source: str | os.PathLike, model: str, out: str | os.PathLike) -> Path:
    """Convert a released TF checkpoint or SavedModel to a PyTorch file at ``out``."""
    torch = require_torch()
    ck = torch_checkpoint_from_tf(model, read_tf_variables(source), str(source))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, out)
    return out


def load_converted(path: Path, model: str):
    """The network of a file written by :func:`convert`, weights loaded.

    Raises:
        WeightsError: another format, naming it and how to convert.
    """
    from .runtime.weights import check_state_dict, load_torch_checkpoint

    ck = load_torch_checkpoint(path, model)
    if not isinstance(ck, dict) or ck.get("format") != FORMATS[model]:
        found = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
        raise WeightsError(
            f"{path} is not a converted {model} model (format {found!r}, expected {FORMATS[model]!r}); "
            f"convert the TensorFlow release with `global-loc convert --model {model} --tf PATH --out FILE`"
        )
    net = build_net(model, ck["conf"])
    check_state_dict(ck["state_dict"], net.state_dict(), path, model)
    net.load_state_dict(ck["state_dict"], strict=True)
    return net, ck["conf"]
