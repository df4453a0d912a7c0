"""Finding and checking weight files.

A preset names a weight file by its published name (``aliked-n16.pth``); global_loc looks
for it, in this order, as a path, under the ``models_dir`` of the configuration (the CLI's
``--models-dir``; searched recursively) and under ``$GLOBAL_LOC_MODELS`` (also recursively).
``models/manifest.yaml`` records the size and sha256 of the official releases: a file that
differs is refused with a message saying so. Nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from functools import lru_cache
from pathlib import Path

import yaml

from ..errors import GlobalLocError

ENV_VAR = "GLOBAL_LOC_MODELS"


class WeightsError(GlobalLocError):
    """A weight file that is missing, truncated, or not the one the model expects."""


def _manifest_path() -> Path:
    # the repository's models/ (or the installed share/global_loc/models)
    here = Path(__file__).resolve().parents[2] / "models" / "manifest.yaml"
    if here.exists():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("global_loc")) / "models" / "manifest.yaml"
    except Exception:
        return here


@lru_cache(maxsize=1)
def manifest() -> dict:
    """The entries of ``models/manifest.yaml`` by file name (empty where it is absent)."""
    p = _manifest_path()
    if not p.exists():
        return {}
    return (yaml.safe_load(p.read_text()) or {}).get("files", {}) or {}


def source_hint(name: str) -> str:
    e = manifest().get(name)
    return f"; the official file is published at {e['source']} ({e['licence']})" if e else ""


def find_weights(name: str, models_dir: str | os.PathLike | None = None) -> Path:
    """The path of the weight file ``name``.

    Args:
        name: a path, or a published file (or folder) name to search for.
        models_dir: a folder to search recursively first.
    Raises:
        WeightsError: not found; the message lists where it looked and where the official
            file is published.
    """
    p = Path(name).expanduser()
    if p.exists():
        return p
    places = []
    for root in (models_dir, os.environ.get(ENV_VAR)):
        if not root:
            continue
        root = Path(root).expanduser()
        places.append(str(root))
        if (root / name).exists():
            return root / name
        if root.is_dir():
            hits = sorted(root.rglob(Path(name).name))
            if hits:
                return hits[0]
    where = ", ".join(places) if places else "nowhere: give --models-dir DIR or set $GLOBAL_LOC_MODELS"
    raise WeightsError(f"weight file '{name}' not found (looked in {where}){source_hint(Path(name).name)}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file(path: Path) -> None:
    """Compare a file with its manifest entry (when the manifest records one).

    Raises:
        WeightsError: a size or checksum that differs from the official release.
    """
    e = manifest().get(path.name)
    if not e or not path.is_file():
        return
    size = path.stat().st_size
    if e.get("size") and size != e["size"]:
        kind = "truncated" if size < e["size"] else "not the published file"
        raise WeightsError(
            f"weight file {path} is {size} bytes, the published {path.name} has {e['size']}: it is "
            f"{kind}{source_hint(path.name)}"
        )
    if e.get("sha256") and sha256(path) != e["sha256"]:
        raise WeightsError(
            f"weight file {path} does not have the checksum of the published {path.name}; "
            f"download it again{source_hint(path.name)}"
        )


def check_state_dict(state: dict, expected: dict, path: Path, what: str) -> None:
    """Check tensor names and shapes of a checkpoint against a model's.

    Args:
        state: name -> tensor read from the file.
        expected: name -> tensor of the model.
    Raises:
        WeightsError: naming missing, unexpected and mis-shaped tensors, and the source.
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}" for k in expected
              if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"wrong shapes: {'; '.join(shapes[:3])}")
        raise WeightsError(
            f"{path} does not hold {what} weights: {', '.join(parts)}; expected tensors like "
            f"{', '.join(list(expected)[:3])}{source_hint(path.name)}"
        )


# --- loading PyTorch checkpoints safely ----------------------------------------------------------
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "int"), ("builtins", "float"), ("builtins", "str"), ("builtins", "bool"),
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torch", "Size"), ("torch", "FloatStorage"), ("torch", "DoubleStorage"), ("torch", "HalfStorage"),
    ("torch", "LongStorage"), ("torch", "IntStorage"), ("torch", "ShortStorage"), ("torch", "ByteStorage"),
    ("torch", "CharStorage"), ("torch", "BoolStorage"), ("torch", "BFloat16Storage"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module.replace("__builtin__", "builtins"), name) not in _ALLOWED_GLOBALS:  # Python 2 pickles
            raise pickle.UnpicklingError(f"the checkpoint refers to {module}.{name}, which is not a plain "
                                         "container or tensor; it is not loaded")
        return super().find_class(module, name)


class _RestrictedPickle:
    """A ``pickle_module`` for ``torch.load`` that only rebuilds containers and tensors."""

    Unpickler = _RestrictedUnpickler
    __name__ = "global_loc_restricted_pickle"

    @staticmethod
    def load(f, **kwargs):
        return _RestrictedUnpickler(f, **kwargs).load()


def load_torch_checkpoint(path: Path, what: str):
    """Read a PyTorch checkpoint without running code from it: ``weights_only`` loading, or,
    for older files holding containers it refuses (e.g. a ``defaultdict``), an unpickler that
    allows containers and tensors only.

    Raises:
        WeightsError: a truncated or foreign file, or one that holds other objects.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:
        try:
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle)
        except Exception as e:
            reason = e if isinstance(e, pickle.UnpicklingError) else first
            raise WeightsError(f"cannot read {what} weights from {path} ({str(reason).splitlines()[0]}); "
                               f"it is truncated or not a PyTorch file{source_hint(path.name)}") from None
