"""Exceptions of global_loc.

Every error a user can cause (a missing file, a corrupt image, an unknown camera model, a map
of another version) is a :class:`GlobalLocError`. Its message is one sentence that says what
was wrong and what to do; the command line prints it as one line, without a traceback.
Anything else that escapes is a bug in global_loc.
"""
from __future__ import annotations


class GlobalLocError(Exception):
    """Base class of the errors a user can cause and fix."""


class InputError(GlobalLocError, ValueError):
    """Bad user input: a missing or malformed file, an inconsistent argument."""


class ImageReadError(InputError):
    """An image file is missing, unreadable or corrupt, or disagrees with its camera."""


class CameraModelError(InputError):
    """An unknown camera model, or a parameter list of the wrong length."""


class ConfigError(InputError):
    """A configuration key or value that global_loc does not know."""


class MapFormatError(GlobalLocError):
    """A map file that cannot be read: truncated, corrupt, or of another schema version."""


class MapMismatchError(GlobalLocError):
    """A map built with other models (descriptor type or size) than the ones in use."""


class EmptyMapError(GlobalLocError):
    """A map without keyframes or without 3D points, which cannot localize anything."""


#: optional packages: what needs them and the command that installs them
OPTIONAL_DEPENDENCIES = {
    "torch": ("learned models", "pip install torch, then pip install -e '.[learned]' (make install does both)"),
    "onnxruntime": ("ONNX Runtime backends", "pip install -e '.[learned]' (or '.[gpu]' for CUDA)"),
    "onnx": ("ONNX export", "pip install -e '.[learned]'"),
    "kapture": ("kapture data sets", "pip install -e '.[kapture]'"),
    "ray": ("indexing on Ray (--ray)", "pip install -e '.[distributed]'"),
    "matplotlib": ("plots (--plot)", "pip install -e '.[plot]'"),
    "rclpy": ("the ROS 2 nodes and global-loc replay", "source a ROS 2 installation, or see the README's 'Install'"),
}


class MissingDependencyError(GlobalLocError, ImportError):
    """An optional package is not installed; the message says what needs it and how to install it."""


def missing_dependency(e: ImportError) -> MissingDependencyError | None:
    """The one-line error for ``e`` when it is an optional package missing, else None."""
    root = (getattr(e, "name", None) or "").split(".")[0]
    if root not in OPTIONAL_DEPENDENCIES:
        return None
    what, how = OPTIONAL_DEPENDENCIES[root]
    return MissingDependencyError(f"{what} need the Python package '{root}', which is not installed: {how}")
