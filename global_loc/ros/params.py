"""The ROS parameters of the nodes: names, types, defaults, ranges and descriptions.

The nodes declare their parameters from these specifications (with ROS parameter
descriptors and ranges), ``config/*.yaml`` documents every one of them, and
:func:`validate` checks values without ROS, so the tests check all three against each other.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..config import STREAM_KEYFRAME_DEFAULTS
from ..errors import ConfigError


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter.

    Attributes:
        name: parameter name.
        type: ``bool``, ``int``, ``float``, ``str`` or ``list[str]``.
        default: default value.
        description: what it does (also the descriptor's text).
        range: ``(min, max)`` for numbers, inclusive, or None.
        choices: allowed values for strings, or None.
        read_only: cannot change after configuration.
        preset_key: the preset value this parameter sets (``section.key``), or None. Such a
            parameter has no default of its own: left unset (not in a parameter file, not on
            the command line), the preset, the map's recorded settings and ``preset_overrides``
            decide (:func:`~global_loc.config.resolve_conf`); set, it wins over them.
    """

    name: str
    type: str
    default: Any
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False
    preset_key: str | None = None


_COMMON = [
    ParamSpec("preset_overrides", "list[str]", [], "preset values to override, each "
              "'section.key=value', e.g. 'localization.num_retrieved=20'", read_only=True),
    ParamSpec("models_dir", "str", "", "folder searched for weight files of learned models (also "
              "$GLOBAL_LOC_MODELS)", read_only=True),
    ParamSpec("device", "str", None, "where models run: auto (CUDA where available), cpu or cuda; "
              "unset: the preset's (auto)", choices=("auto", "cpu", "cuda"), read_only=True, preset_key="device"),
    ParamSpec("image_transport", "str", "raw", "'raw' subscribes to sensor_msgs/Image on 'image', "
              "'compressed' to sensor_msgs/CompressedImage on 'image/compressed'",
              choices=("raw", "compressed"), read_only=True),
    ParamSpec("image_qos", "str", "reliable", "QoS of the image and camera_info subscriptions: "
              "'reliable' (what most camera drivers and image_transport publish; large images over Fast "
              "DDS need it, or config/fastdds_large_data.xml on the publisher) or 'sensor_data' (best "
              "effort, for cameras that publish best effort)", choices=("reliable", "sensor_data"),
              read_only=True),
    ParamSpec("camera_frame", "str", "", "the camera's optical frame; empty: the images' header.frame_id"),
    ParamSpec("sync_slop", "float", 0.02, "approximate time synchronisation of image and camera_info, "
              "seconds", range=(0.0, 1.0)),
    ParamSpec("tf_timeout", "float", 0.1, "how long to wait for a transform at an image stamp, seconds",
              range=(0.0, 5.0)),
]

LOCALIZER_PARAMS: list[ParamSpec] = [
    ParamSpec("map_path", "str", "", "map file to localize against (global-loc index ...); required",
              read_only=True),
    ParamSpec("autostart", "bool", False, "configure and activate at start, as `ros2 lifecycle set` "
              "would (the launch file sets it); false: wait for the lifecycle transitions", read_only=True),
    ParamSpec("preset", "str", "", "named preset or YAML file; empty: the preset recorded in the map",
              read_only=True),
    *_COMMON,
    ParamSpec("cameras", "list[str]", [], "a camera rig: the namespaces of its cameras (each with "
              "<ns>/image_raw and <ns>/camera_info, e.g. ['/front', '/back']); their frames are synchronised "
              "(rig_sync_slop) and one base_frame pose is solved from all of them (each camera's extrinsics "
              "base_frame -> camera from /tf_static); empty: one camera on 'image' and 'camera_info'",
              read_only=True),
    ParamSpec("rig_sync_slop", "float", 0.01, "with cameras: images of the cameras within this much of "
              "each other make one rig frame (cameras not triggered together: at most half a frame "
              "period; the pose assumes one instant), seconds", range=(0.0, 1.0), read_only=True),
    ParamSpec("queue_size", "int", 3, "frames waiting for the worker, oldest first; the oldest is dropped "
              "when full. 3: the frames that arrive during a global query are tracked after it (by optical "
              "flow, a few ms each) instead of dropped; "
              "1: the lowest latency", range=(1, 100)),
    ParamSpec("map_frame", "str", "", "the map frame; empty: the map file's frame"),
    ParamSpec("odom_frame", "str", "odom", "odometry frame: map -> odom is broadcast (REP-105); "
              "empty: broadcast map -> base_frame instead"),
    ParamSpec("base_frame", "str", "base_link", "the robot's body frame"),
    ParamSpec("publish_tf", "bool", True, "broadcast map -> odom (or map -> base_frame)"),
    ParamSpec("rate_hz", "float", 0.0, "at most this many localizations per second (0: as many as "
              "the computer allows); frames in between are dropped", range=(0.0, 1000.0)),
    ParamSpec("min_inliers", "int", None, "PnP inliers a pose needs to be published", range=(4, 100000),
              read_only=True, preset_key="localization.min_inliers"),
    ParamSpec("min_inlier_ratio", "float", None, "fraction of 2D-3D matches that must be inliers",
              range=(0.0, 1.0), read_only=True, preset_key="localization.min_inlier_ratio"),
    ParamSpec("num_retrieved", "int", None, "keyframes retrieved by global descriptor", range=(1, 1000),
              read_only=True, preset_key="localization.num_retrieved"),
    ParamSpec("tracking", "bool", None, "between global queries, localize each frame against the map "
              "points near the last pose moved by the odometry (odom_frame in tf) or a constant-velocity "
              "model: a fraction of a global query's time; false: a global query per frame",
              read_only=True, preset_key="tracking.enabled"),
    ParamSpec("global_period", "float", None, "while tracking, a global query at least this often, so "
              "that a wrong track cannot persist, seconds of image time", range=(0.0, 3600.0),
              read_only=True, preset_key="tracking.global_period_s"),
    ParamSpec("refine", "str", None, "refine each pose by aligning dense features with the map's "
              "(PixLoc/DRAN; the map must hold reference features: built by global_loc >= schema 2): "
              "'featuremetric' or 'none'",
              choices=("", "none", "featuremetric"), read_only=True, preset_key="refinement.method"),
    ParamSpec("max_frame_age", "float", 1.0, "a frame older than this (node clock minus image stamp) "
              "when the worker takes it is dropped, not localized, so no stale pose is published; also "
              "catches a clock mismatch (use_sim_time), seconds", range=(0.01, 3600.0)),
    ParamSpec("transform_tolerance", "float", 0.1, "the broadcast transform is stamped this much "
              "after the image, so that it stays usable until the next one (as in AMCL), seconds",
              range=(0.0, 10.0)),
    ParamSpec("diagnostics_period", "float", 1.0, "period of /diagnostics, seconds", range=(0.05, 60.0)),
]

MAP_INDEXER_PARAMS: list[ParamSpec] = [
    ParamSpec("map_path", "str", "", "map file to write on ~/save_map and at shutdown; required",
              read_only=True),
    ParamSpec("preset", "str", "", "named preset or YAML file; empty: sift", read_only=True),
    *_COMMON,
    ParamSpec("queue_size", "int", 1, "frames waiting for the worker; the oldest is dropped when full",
              range=(1, 100)),
    ParamSpec("map_frame", "str", "map", "frame of the keyframe poses (looked up in tf)"),
    ParamSpec("keyframe_min_distance", "float", None, "a frame becomes a keyframe after this much "
              "travel, metres ...", range=(0.0, 100.0), read_only=True,
              preset_key="mapping.keyframe_min_distance_m"),
    ParamSpec("keyframe_min_rotation", "float", None, "... or this much rotation, degrees",
              range=(0.0, 180.0), read_only=True, preset_key="mapping.keyframe_min_rotation_deg"),
    ParamSpec("keyframe_queue_size", "int", 100, "selected keyframes waiting for feature extraction "
              "(each holds its image); keyframes are selected at the camera's rate, extracted at the "
              "computer's, and all of them are extracted before the map is written at shutdown",
              range=(1, 10000)),
    ParamSpec("autosave_every", "int", 50, "write the map every N new keyframes (0: only on "
              "~/save_map and at shutdown), so a crash loses at most N", range=(0, 100000)),
    ParamSpec("incremental_save_after", "int", 100, "once the saved map holds N keyframes, a save adds only "
              "the keyframes since the last save (its time grows with those, not with the map; the "
              "vocabulary and camera corrections stay those of that save); before, and with 0 always, a save "
              "builds the whole map", range=(0, 1000000), read_only=True),
]


def specs_by_name(specs: list[ParamSpec]) -> dict[str, ParamSpec]:
    return {s.name: s for s in specs}


def _check(spec: ParamSpec, value):
    if spec.preset_key is not None and value in (None, ""):
        return None  # not set: the preset decides
    t = spec.type
    ok = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "list[str]": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
    }[t](value)
    if not ok:
        raise ConfigError(f"parameter '{spec.name}' must be {t}, got {value!r}")
    if t == "float":
        value = float(value)
    if t == "list[str]":
        value = list(value)
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        raise ConfigError(
            f"parameter '{spec.name}' = {value} is outside [{spec.range[0]}, {spec.range[1]}]"
        )
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"parameter '{spec.name}' = {value!r} must be one of {', '.join(spec.choices)}")
    return value


def validate(specs: list[ParamSpec], values: dict[str, Any], require: tuple[str, ...] = ("map_path",)) -> dict[str, Any]:
    """Defaults merged with ``values``, every value checked.

    Raises:
        ConfigError: an unknown parameter, a value of the wrong type, out of range, not among
            the choices, or a required parameter left empty.
    """
    by = specs_by_name(specs)
    unknown = [k for k in values if k not in by]
    if unknown:
        raise ConfigError(f"unknown parameter '{unknown[0]}'; known: {', '.join(by)}")
    out = {s.name: s.default for s in specs}
    for k, v in values.items():
        out[k] = _check(by[k], v)
    for r in require:
        if r in out and not out[r]:
            raise ConfigError(f"parameter '{r}' is required: {by[r].description}")
    return out


def preset_settings(specs: list[ParamSpec], values: dict[str, Any]) -> dict[str, Any]:
    """``{"section.key": value}`` of the parameters in ``values`` that set a preset value
    (:attr:`ParamSpec.preset_key`), None for those left unset: the ``settings`` of
    :func:`~global_loc.config.resolve_conf`."""
    return {s.preset_key: values.get(s.name) for s in specs if s.preset_key is not None}


NODES = {"localizer": LOCALIZER_PARAMS, "map_indexer": MAP_INDEXER_PARAMS}


def params_yaml(node_name: str) -> str:
    """The documented ``config/<node>.yaml`` of a node, generated from its specifications:
    ``python -m global_loc.ros.params`` rewrites the files; a test checks they are current."""
    specs = NODES[node_name]
    lines = [
        f"# Parameters of the global_loc {node_name} node (generated from global_loc/ros/params.py:",
        "# `python -m global_loc.ros.params config`). Ranges are enforced when the node starts.",
        "/**:",
        "  ros__parameters:",
    ]
    from ..config import get_key, load_preset, to_dict

    preset = to_dict(load_preset())
    for s in specs:
        extra = []
        if s.range is not None:
            extra.append(f"range [{s.range[0]:g}, {s.range[1]:g}]")
        if s.choices:
            extra.append("one of " + ", ".join(c for c in s.choices if c))
        if s.read_only:
            extra.append("read at configuration")
        lines.append(f"    # {s.description}" + (f" ({'; '.join(extra)})" if extra else ""))
        if s.preset_key is not None:
            default = get_key(preset, s.preset_key)
            if node_name == "map_indexer" and s.preset_key in STREAM_KEYFRAME_DEFAULTS and not default:
                default = STREAM_KEYFRAME_DEFAULTS[s.preset_key]
            recorded = " (as the map recorded it)" if node_name == "localizer" else ""
            lines.append(f"    # left unset: the preset's {s.preset_key}{recorded} and preset_overrides "
                         "decide; set, it wins over both")
            value = json.dumps(default) if s.type != "float" else repr(float(default))
            lines.append(f"    # {s.name}: {value}")
            continue
        value = json.dumps(s.default) if s.type != "float" else repr(float(s.default))
        lines.append(f"    {s.name}: {value}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - developer tool
    import sys
    from pathlib import Path

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "config")
    for name in NODES:
        (out / f"{name}.yaml").write_text(params_yaml(name))
        print(f"wrote {out / name}.yaml")
