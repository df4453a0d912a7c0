"""global_loc: visual global localization against a prebuilt map.

The pipeline (no ROS needed)::

    from global_loc import MapBuilder, Localizer, load_preset, read_map, write_map

ROS 2 nodes live in :mod:`global_loc.ros`, the only subpackage that imports rclpy.
Importing this package has no side effects: no logging handlers, no global torch state.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Camera": "global_loc.geometry.camera",
    "Pose": "global_loc.geometry.transforms",
    "pose_error": "global_loc.geometry.transforms",
    "Keyframe": "global_loc.types",
    "LocalFeatures": "global_loc.types",
    "LocalizationResult": "global_loc.types",
    "Status": "global_loc.types",
    "PipelineConf": "global_loc.config",
    "load_preset": "global_loc.config",
    "MapIndex": "global_loc.map.index",
    "read_map": "global_loc.map.storage",
    "write_map": "global_loc.map.storage",
    "MapBuilder": "global_loc.map.builder",
    "Localizer": "global_loc.localizer",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'global_loc' has no attribute '{name}'")
