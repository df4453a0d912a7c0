"""The ``global-loc`` command.

Subcommands mirror the stages of :mod:`global_loc.pipeline`:

- ``global-loc index``: build a map (image folder + poses + cameras, or a COLMAP model).
- ``global-loc localize``: localize query images against a map.
- ``global-loc evaluate``: recall and errors of localization results against ground truth.
- ``global-loc map info``, ``map prune``, ``map merge``: what a map file holds; keyframes removed;
  two maps of one place made one.

A mistake in the input (a missing file, an unknown camera model, a map of another version)
prints one line, ``error: ...``, and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .. import __version__
from ..errors import GlobalLocError

#: The logged statuses that carry a pose: the values of ``types.LOCALIZED_STATUSES`` (not
#: imported here, so that ``--help`` does not load numpy).
LOCALIZED_NAMES = ("localized", "localized_relative")

logger = logging.getLogger("global_loc")


def _add_preset_args(p: argparse.ArgumentParser, default_from_map: bool = False) -> None:
    p.add_argument("--models-dir", type=Path, default=None,
                   help="folder searched recursively for weight files (also $GLOBAL_LOC_MODELS)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="where learned models run (default: the preset's, auto)")
    p.add_argument(
        "--preset",
        default=None,
        help="named preset or YAML file"
        + (" (default: the preset recorded in the map)" if default_from_map else " (default: sift)"),
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one preset value, e.g. --set localization.min_inliers=20 (repeatable)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="global-loc",
        description="Visual global localization against a prebuilt map.",
    )
    parser.add_argument("--version", action="version", version=f"global_loc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("index", help="build a map from keyframes with known poses")
    src = p.add_argument_group("keyframes from an image folder")
    src.add_argument("--images", type=Path, help="image folder (names in the lists are relative to it)")
    src.add_argument("--poses", type=Path, help="pose list: name qw qx qy qz tx ty tz (cam_from_world)")
    src.add_argument("--cameras", type=Path, help="camera list: name MODEL WIDTH HEIGHT PARAMS... (hloc); "
                     "with --bag, the camera to use instead of camera_info (the line named after the "
                     "image topic, or the only line)")
    src.add_argument("--image-list", type=Path, default=None, metavar="FILE",
                     help="--images without --poses: the photos to use, one name per line (the first word of "
                          "each line; default: every image in --images)")
    src.add_argument("--sfm-dir", type=Path, default=None, metavar="DIR",
                     help="--images without --poses: structure from motion (COLMAP, through pycolmap) gives "
                          "the poses; its database and model go here (default: <out stem>_sfm beside --out)")
    src.add_argument("--single-camera", action="store_true",
                     help="--images without --poses: one camera took every photo (one set of intrinsics); "
                          "default: photos share intrinsics where their EXIF and size say so")
    col = p.add_argument_group("keyframes from a COLMAP reconstruction")
    col.add_argument("--colmap", type=Path, metavar="MODEL_DIR", help="COLMAP model folder (text or binary)")
    kap = p.add_argument_group("keyframes from a kapture data set")
    kap.add_argument("--kapture", type=Path, metavar="DIR",
                     help="kapture mapping set: its camera records with a pose (trajectories, rigs composed)")
    bag = p.add_argument_group("keyframes from a ROS 1 / ROS 2 bag (poses from /tf or --pose-topic)")
    _add_bag_args(bag, several=True)
    bag.add_argument("--pose-topic", help="nav_msgs/Odometry or geometry_msgs/PoseStamped topic with the "
                     "pose of a body frame in the map frame (default: poses from /tf)")
    bag.add_argument("--body-frame", help="body frame of --pose-topic (default: the Odometry's "
                     "child_frame_id, else base_link)")
    bag.add_argument("--min-distance", type=float, default=None, metavar="M",
                     help="keyframe selection: travelled distance (default: the preset's "
                          "mapping.keyframe_min_distance_m, 0.2 m where the preset selects none; wins over --set)")
    bag.add_argument("--min-rotation", type=float, default=None, metavar="DEG",
                     help="keyframe selection: rotation (default: the preset's mapping.keyframe_min_rotation_deg, "
                          "10 deg where the preset selects none; wins over --set)")
    p.add_argument("--out", type=Path, required=True, help="map file to write")
    p.add_argument("--update", type=Path, default=None, metavar="MAP",
                   help="add these keyframes (--images/--poses/--cameras, --kapture or --bag: a new run) to MAP "
                        "instead of building a map from them alone: only they are extracted, old keyframes and "
                        "points keep their ids, old points are extended, new ones triangulated; the map's preset "
                        "(--out may be MAP itself: written atomically)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="NAME",
                   help="images to leave out of the map (names as the lists or the COLMAP model give them), "
                        "e.g. a query to be localized against the others")
    p.add_argument(
        "--descriptor-dtype", choices=["float16", "float32"], default="float16",
        help="storage of local descriptors (default: float16)",
    )
    par = p.add_argument_group("parallel and distributed indexing (the per-keyframe work: features, "
                               "global and dense descriptors)")
    par.add_argument("--workers", type=int, default=0, metavar="N",
                     help="worker processes on this machine (default 0: one per core, none for under 40 "
                          "images; 1: none). With "
                          "--ray: Ray tasks in flight are 2N (default: twice the cluster's CPUs)")
    par.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="run that work as Ray tasks: without a value a Ray instance on this machine "
                          "(or the cluster RAY_ADDRESS names); 'auto' the cluster started here with "
                          "`ray start`; HOST:PORT or ray://HOST:10001 a remote cluster (global_loc "
                          "installed on its nodes)")
    _add_preset_args(p)
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("localize", help="localize query images (a folder or a bag) against a map")
    p.add_argument("--map", type=Path, required=True, help="map file")
    p.add_argument("--images", type=Path, help="query image folder")
    p.add_argument("--queries", type=Path, help="query list: name MODEL WIDTH HEIGHT PARAMS... (hloc)")
    p.add_argument("--kapture", type=Path, metavar="DIR",
                   help="queries from a kapture data set (its camera records); the poses are also written "
                        "as a kapture data set <out stem>_kapture/ (trajectories of the localized queries)")
    bag = p.add_argument_group("queries from a bag")
    _add_bag_args(bag, with_cameras=True, rig=True)
    bag.add_argument("--out-bag", type=Path, help="also write a ROS 2 bag with the poses and the "
                     "map -> odom transforms the localizer node would have published")
    bag.add_argument("--out-bag-format", choices=["mcap", "sqlite3", "ros1"], default="mcap")
    bag.add_argument("--odom-frame", default="odom", help="odometry frame; '' broadcasts map -> base "
                     "(default: odom)")
    bag.add_argument("--base-frame", default="base_link", help="robot body frame (default: base_link)")
    bag.add_argument("--every", type=int, default=1, metavar="N", help="localize one frame in N")
    bag.add_argument("--tracking", choices=["on", "off"], default=None,
                     help="track against the map between global queries, from the last pose and the "
                          "odometry (default: the preset's tracking.enabled, on); off: a global query "
                          "per frame")
    p.add_argument("--refine", choices=["none", "featuremetric"], default=None,
                   help="featuremetric: refine each pose by aligning dense features with the map's "
                        "reference features (PixLoc/DRAN; the map must hold them, as maps of schema 2 do); "
                        "default: the preset's refinement.method, none")
    p.add_argument("--out", type=Path, required=True,
                   help="results: with --images, name qw qx qy qz tx ty tz per localized query; with "
                        "--bag, a TUM trajectory (stamp tx ty tz qx qy qz qw, map_from_camera). A JSON "
                        "log of every query is written beside it (<stem>_log.json)")
    _add_preset_args(p, default_from_map=True)
    p.set_defaults(func=_cmd_localize)

    p = sub.add_parser("evaluate", help="recall and errors against ground-truth poses; "
                                        "with --retrieval, place-recognition recall@N")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--results", type=Path, help="results of global-loc localize")
    what.add_argument("--retrieval", type=Path, metavar="LOG",
                      help="the JSON log of global-loc localize: recall@N of the keyframes each query "
                           "retrieved (global queries only), positives from --gt and the keyframes' poses")
    p.add_argument("--gt", type=Path, required=True, help="ground truth: name qw qx qy qz tx ty tz")
    p.add_argument(
        "--thresholds", nargs="+", default=["0.25,2", "0.5,5", "5,10"], metavar="M,DEG",
        help="(metres,degrees) pairs (default: 0.25,2 0.5,5 5,10)",
    )
    p.add_argument(
        "--queries", type=Path, default=None,
        help="the full query list (default: the JSON log beside --results, else the "
             "results themselves, so that failures cannot be counted)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.add_argument("--align", action="store_true",
                   help="first align the results to --gt by one similarity transform over all localized "
                        "queries (for maps from structure from motion: their frame and scale are COLMAP's); "
                        "prints the alignment's residuals")
    p.add_argument("--max-dt", type=float, default=1e-3,
                   help="TUM trajectories: stamp association tolerance, seconds (default 0.001)")
    p.add_argument("--plot", type=Path, default=None,
                   help="TUM trajectories: save a plot of both trajectories and the errors (PNG); "
                        "--retrieval: the recall@N curve")
    p.add_argument("--map", type=Path, default=None,
                   help="--retrieval: the map the log was localized against (its keyframes' poses)")
    p.add_argument("--positive", default="0.25,15", metavar="M,DEG",
                   help="--retrieval: a keyframe is a positive within M metres and DEG degrees of "
                        "viewing direction of the query's true pose (default 0.25,15)")
    p.add_argument("--recall-at", nargs="+", type=int, default=[1, 5, 10, 20], metavar="N",
                   help="--retrieval: the N of recall@N (default 1 5 10 20; N above the keyframes "
                        "each query retrieved needs --set localization.num_retrieved=N when localizing)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("inspect", help="list a bag's topics, types, counts, frames and time span")
    p.add_argument("--bag", type=Path, required=True, help="ROS 1 .bag file or ROS 2 bag folder")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("map", help="work on a map file: info, prune, merge")
    p.set_defaults(func=lambda args, _p=p: (_p.print_help(), 2)[1])
    map_sub = p.add_subparsers(dest="map_command", metavar="MAP_COMMAND")
    q = map_sub.add_parser("info", help="what a map holds: models, keyframes, points, cameras, source, build")
    q.add_argument("map", type=Path, help="map file")
    q.add_argument("--verify", action="store_true", help="also check the checksum of every array (reads it all)")
    q.add_argument("--keyframes", action="store_true", help="also list every keyframe: name, id, stamp, camera")
    q.add_argument("--json", action="store_true", help="print JSON instead of text")
    q.set_defaults(func=_cmd_map_info)
    q = map_sub.add_parser("prune", help="remove keyframes and the 3D points only they observe (ids of the rest "
                                         "stay)")
    q.add_argument("map", type=Path, help="map file")
    q.add_argument("--out", type=Path, required=True, help="the pruned map (may be MAP itself: written atomically)")
    q.add_argument("--keyframes", nargs="+", default=[], metavar="NAME", help="keyframe names to remove")
    q.add_argument("--keyframe-list", type=Path, default=None, metavar="FILE",
                   help="a file of keyframe names to remove, one per line (# comments)")
    q.add_argument("--before", type=float, default=None, metavar="STAMP",
                   help="remove the keyframes stamped before STAMP (seconds, the recording's clock)")
    q.set_defaults(func=_cmd_map_prune)
    q = map_sub.add_parser("merge", help="add map B's keyframes to map A: B's frame aligned to A's by localizing B's "
                                         "keyframes in A, then B added as a new run")
    q.add_argument("a", type=Path, metavar="A", help="the map to add to (its frame, ids and points stay)")
    q.add_argument("b", type=Path, metavar="B", help="the map to add (same preset as A)")
    q.add_argument("--out", type=Path, required=True, help="the merged map (may be A itself: written atomically)")
    q.add_argument("--rigid", action="store_true",
                   help="a rigid alignment (scale 1), for maps whose poses are metric (odometry, tf, ground truth); "
                        "default: a similarity, whose scale is printed")
    q.add_argument("--max-error-m", type=float, default=None, metavar="M",
                   help="a keyframe of B agrees with the alignment when its camera centre localized in A lies within "
                        "M metres of the aligned one (default: 2%% of the extent of those localized)")
    q.add_argument("--max-error-deg", type=float, default=2.0, metavar="DEG",
                   help="... and its orientation within DEG degrees (default 2)")
    q.add_argument("--min-agreeing", type=int, default=3, metavar="N",
                   help="refuse the merge when fewer than N keyframes of B agree (default 3, at least 3)")
    q.add_argument("--prefix", default="", help="put before B's keyframe names (names must be unique)")
    q.add_argument("--align-only", action="store_true", help="print the alignment and write nothing")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override A's localization options while B's keyframes are localized in it")
    q.set_defaults(func=_cmd_map_merge)

    p = sub.add_parser("time-query", help="time each localization stage on the target machine")
    p.add_argument("--map", type=Path, required=True, help="map file")
    p.add_argument("--images", type=Path, required=True, help="query image folder")
    p.add_argument("--queries", type=Path, required=True, help="query list (hloc format)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default=None,
                   help="backend of the learned models (default: the preset's)")
    p.add_argument("--max-num-queries", type=int, default=0, help="time at most N queries (0: all)")
    p.add_argument("--warmup", type=int, default=3, help="untimed queries first")
    p.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    _add_preset_args(p, default_from_map=True)
    p.set_defaults(func=_cmd_time_query)

    p = sub.add_parser("export", help="write the learned networks of a preset as ONNX")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--check", action="store_true",
                   help="run ONNX Runtime and PyTorch on a test image and print the largest difference")
    _add_preset_args(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("convert", help="convert a TensorFlow release (MobileNetVLAD, HF-Net) to PyTorch")
    p.add_argument("--model", choices=["mobilenetvlad", "hfnet"], required=True)
    p.add_argument("--tf", type=Path, required=True, help="TF checkpoint prefix or SavedModel folder")
    p.add_argument("--out", type=Path, required=True, help="PyTorch file to write (.pth)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("synth", help="generate the synthetic robot world as bags")
    p.add_argument("--out", type=Path, required=True, help="a new folder")
    p.add_argument("--format", choices=["mcap", "sqlite3", "ros1"], default="mcap")
    p.add_argument("--compressed", action="store_true", help="JPEG sensor_msgs/CompressedImage")
    p.add_argument("--textures", type=Path, default=None,
                   help="folder of photos used as textures (default: procedural textures)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--query-seconds", type=float, default=30.0, help="length of the query run")
    p.add_argument("--query-rate", type=float, default=10.0, metavar="HZ",
                   help="camera rate of the query run (the robot's speed does not change)")
    p.add_argument("--layout", choices=["room", "twin-rooms"], default="room",
                   help="room: one room (the default); twin-rooms: two rooms alike but for one wall, "
                   "joined by a doorway, and a third run (kidnap) in which the robot is carried from one "
                   "room to the same spot in the other (--query-seconds does not apply: one lap per room)")
    p.add_argument("--cameras", default="front", metavar="NAMES",
                   help="the robot's cameras, comma-separated: front (the default), back, left, right; "
                   "each on /<name>_camera/... (front: /camera/...), all with the same stamps")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("replay", help="publish a ROS 1 / ROS 2 bag on a live ROS 2 graph, with /clock "
                       "(needs rclpy)")
    p.add_argument("--bag", type=Path, required=True, help="ROS 1 .bag file or ROS 2 bag folder (sqlite3 or MCAP)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    p.add_argument("--topics", nargs="+", metavar="TOPIC", help="topics to play (default: all)")
    p.add_argument("--loops", type=int, default=1, metavar="N",
                   help="laps of the bag, stamps shifted so that time moves on (0: until Ctrl-C; default 1)")
    p.add_argument("--no-clock", dest="clock", action="store_false", help="do not publish /clock")
    p.add_argument("--qos", choices=["reliable", "sensor_data"], default="reliable",
                   help="QoS of the published topics (default reliable; /tf_static is always latched)")
    p.add_argument("--wait-for", nargs="+", metavar="TOPIC", default=[],
                   help="wait until these topics have a subscriber before playing (TOPIC:N: N subscribers)")
    p.add_argument("--wait-timeout", type=float, default=30.0, metavar="S",
                   help="longest wait for --wait-for (default 30 s)")
    p.set_defaults(func=_cmd_replay)
    return parser


def _add_bag_args(group, with_cameras: bool = False, several: bool = False, rig: bool = False) -> None:
    if several:
        group.add_argument("--bag", type=Path, action="append",
                           help="ROS 1 .bag file or ROS 2 bag folder (sqlite3 or MCAP); repeat it to index "
                           "several runs into one map")
    else:
        group.add_argument("--bag", type=Path, help="ROS 1 .bag file or ROS 2 bag folder (sqlite3 or MCAP)")
    if several or rig:
        group.add_argument("--image-topic", action="append",
                           help="sensor_msgs/Image or CompressedImage topic; repeat it for the cameras of a rig "
                           "(each camera's pose from tf)" if several else
                           "sensor_msgs/Image or CompressedImage topic; repeat it for the cameras of a rig: "
                           "one pose of --base-frame per rig frame (images within 10 ms), the cameras' "
                           "extrinsics from tf")
    else:
        group.add_argument("--image-topic", help="sensor_msgs/Image or CompressedImage topic")
    group.add_argument("--camera-info-topic", help="sensor_msgs/CameraInfo topic (default: camera_info "
                       "beside the image topic)")
    group.add_argument("--map-frame", default="map", help="map frame (default: map)")
    group.add_argument("--camera-frame", help="camera tf frame (default: the images' header.frame_id)")
    if with_cameras:
        group.add_argument("--cameras", type=Path,
                           help="camera file instead of camera_info: one line NAME MODEL W H PARAMS...")


def _bag_camera(args):
    """The camera given by --cameras for a bag: the line named as the image topic, or the only
    line."""
    from ..errors import InputError
    from ..io.text import read_cameras

    path = getattr(args, "cameras", None)
    if path is None:
        return None
    if isinstance(args.image_topic, list) and len(args.image_topic) > 1:  # a rig: one camera per topic
        return {t: _bag_camera(argparse.Namespace(cameras=path, image_topic=t)) for t in args.image_topic}
    if isinstance(args.image_topic, list):
        args = argparse.Namespace(cameras=path, image_topic=args.image_topic[0])
    cams = read_cameras(path)
    if args.image_topic in cams:
        return cams[args.image_topic]
    if len(cams) == 1:
        return next(iter(cams.values()))
    raise InputError(
        f"{path} lists {len(cams)} cameras and none is named '{args.image_topic}'; name the line "
        "after the image topic or keep a single line"
    )


# --------------------------------------------------------------------------------------------
def _cmd_index(args) -> int:
    from ..config import STREAM_KEYFRAME_DEFAULTS, resolve_conf
    from ..io.text import read_cameras, read_poses
    from ..map.storage import write_map
    from ..pipeline import index_colmap_model, index_image_folder
    from ..errors import InputError

    if args.bag is None and (args.min_distance is not None or args.min_rotation is not None):
        raise InputError("--min-distance/--min-rotation select keyframes from a bag; an image folder's "
                         "images are all keyframes (--set mapping.keyframe_min_distance_m=M selects there too)")
    settings = {"models_dir": str(args.models_dir) if args.models_dir else None, "device": args.device,
                "mapping.keyframe_min_distance_m": args.min_distance,
                "mapping.keyframe_min_rotation_deg": args.min_rotation}
    base = None
    if args.update is not None:
        from ..localizer import conf_for_map
        from ..map.storage import read_map

        if args.colmap is not None or (args.images is not None and args.poses is None and args.kapture is None):
            raise InputError("--update adds keyframes with known poses: --images/--poses/--cameras, --kapture or "
                             "--bag (a COLMAP model or photos alone make a map of their own)")
        base = read_map(args.update)
        if args.bag is not None and args.map_frame != base.frame_id:
            raise InputError(f"the map's frame is '{base.frame_id}', --map-frame is '{args.map_frame}': the new "
                             f"run's poses must be in the map's frame (--map-frame {base.frame_id})")
        conf = conf_for_map(base, args.preset, args.overrides, args.models_dir, args.device,
                            {k: v for k, v in settings.items() if k.startswith("mapping.")})
        if args.bag is not None and not conf.mapping.keyframe_min_distance_m and not conf.mapping.keyframe_min_rotation_deg:
            for key, value in STREAM_KEYFRAME_DEFAULTS.items():
                setattr(conf.mapping, key.split(".", 1)[1], value)
    else:
        conf = resolve_conf(args.preset, args.overrides, settings,
                            defaults=STREAM_KEYFRAME_DEFAULTS if args.bag is not None else None)
    if args.workers < 0:
        raise InputError(f"--workers must be 0 (one per core) or positive, got {args.workers}")
    parallel = {"workers": args.workers, "ray_address": args.ray}
    t0 = time.perf_counter()
    if args.bag is not None:
        from ..pipeline import index_bag

        if args.image_topic is None:
            raise InputError("--bag needs --image-topic (see `global-loc inspect --bag BAG`)")
        if args.colmap is not None or args.poses is not None:
            raise InputError("--bag takes poses from the bag; drop --colmap/--poses")
        topics = args.image_topic if len(args.image_topic) > 1 else args.image_topic[0]
        m = index_bag(args.bag, topics, conf, args.camera_info_topic, _bag_camera(args),
                      args.map_frame, args.camera_frame, args.pose_topic, args.body_frame,
                      progress=not args.quiet, base=base, **parallel)
    elif args.kapture is not None:
        from ..io.kapture import read_kapture

        if args.images is not None or args.poses is not None or args.cameras is not None or args.colmap is not None:
            raise InputError("--kapture takes images, poses and cameras from the data set; drop "
                             "--images/--poses/--cameras/--colmap")
        ks = read_kapture(args.kapture)
        poses = ks.poses()
        if not poses:
            raise InputError(f"{args.kapture}: no camera record has a pose (sensors/trajectories.txt): "
                             "a map needs posed keyframes")
        if len(poses) < len(ks.images):
            logger.warning("%d of %d camera records have no pose and are left out", len(ks.images) - len(poses),
                           len(ks.images))
        m = index_image_folder(ks.images_dir, poses, ks.cameras(), conf, args.map_frame, progress=not args.quiet,
                               base=base, **parallel)
    elif args.colmap is not None:
        if args.images is None:
            raise InputError("--colmap needs --images, the folder of the model's images")
        if args.poses is not None or args.cameras is not None:
            raise InputError("--colmap takes poses and cameras from the model; drop --poses/--cameras")
        m = index_colmap_model(args.colmap, args.images, conf, args.map_frame, exclude=args.exclude,
                               progress=not args.quiet, **parallel)
    elif args.images is not None and args.poses is None:
        m = _index_photos(args, conf, parallel)
    else:
        missing = [f for f in ("images", "poses", "cameras") if getattr(args, f) is None]
        if missing:
            raise InputError(
                "give --images (photos alone: structure from motion), or --images, --poses and --cameras "
                "(missing: " + ", ".join("--" + m for m in missing) + "), or --colmap MODEL_DIR --images DIR, "
                "or --kapture DIR, or --bag BAG --image-topic TOPIC"
            )
        poses = {n: p for n, p in read_poses(args.poses).items() if n not in set(args.exclude)}
        cameras = read_cameras(args.cameras)
        m = index_image_folder(args.images, poses, cameras, conf, args.map_frame, progress=not args.quiet,
                               base=base, **parallel)
    m.check_localizable()
    path = write_map(m, args.out, descriptor_dtype=args.descriptor_dtype)
    size = path.stat().st_size / 2**20
    print(f"map: {path} ({size:.1f} MiB), preset '{conf.name}'")
    print(f"  {m.summary()}")
    skipped = m.metadata.get("skipped", {})
    if skipped:
        print(f"  skipped {len(skipped)} frame(s): " + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5]))
    for rec in m.metadata.get("camera_calibration", []) or []:
        dx, dy = rec["delta_px"]
        sx, sy = rec["std_px"]
        print(f"  principal point of the {rec['original']['model']} {rec['original']['width']}x"
              f"{rec['original']['height']} camera moved by ({dx:+.2f}, {dy:+.2f}) px (std {sx:.2f}, {sy:.2f}): "
              f"the tracks' reprojection RMSE falls from {rec['rmse_before_px']:.3f} to {rec['rmse_after_px']:.3f} px; "
              "queries with that camera are localized with the corrected one "
              "(mapping.refine_principal_point=false keeps the given one)")
    took = time.perf_counter() - t0
    if base is not None:
        e = m.metadata["edits"][-1]
        print(f"  added {e['added_keyframes']} keyframes to {args.update} ({base.num_keyframes} keyframes, "
              f"{base.num_points3D} points): {e['pairs']} pairs, {e['extended_observations']} observations of old "
              f"points, {e['new_points']} new points, in {took:.1f} s")
        return 0
    how = m.metadata.get("source", {}).get("indexing", {})
    how = f", {how['workers']} {how['engine']} worker(s)" if how else ""
    print(f"  built in {took:.1f} s ({m.num_keyframes / max(took, 1e-9):.1f} keyframes/s{how})")
    return 0


def _index_photos(args, conf, parallel):
    """``index --images DIR`` without poses: COLMAP's structure from motion, then the map from
    its reconstruction."""
    from ..errors import InputError
    from ..io.text import read_cameras
    from ..map.sfm import list_images, reconstruct
    from ..pipeline import index_colmap_model

    names = list_images(args.images)
    if args.image_list is not None:
        from ..io.text import read_query_list

        listed = list(read_query_list(args.image_list, "image list"))
        unknown = [n for n in listed if n not in set(names)]
        if unknown:
            raise InputError(f"{args.image_list}: {len(unknown)} listed photo(s) are not images in {args.images}: "
                             f"{_names(unknown)}")
        names = listed
    if args.exclude:
        names = [n for n in names if n not in set(args.exclude)]
    cameras = read_cameras(args.cameras) if args.cameras is not None else None
    if cameras is not None:
        names = [n for n in names if n in cameras]
    work = args.sfm_dir or args.out.with_name(args.out.stem + "_sfm")
    print(f"no --poses: structure from motion (COLMAP) on {len(names)} photos in {args.images}; working folder {work}")
    sfm = reconstruct(args.images, work, names, cameras, single_camera=args.single_camera)
    print(f"  {sfm.summary()}")
    if sfm.unregistered:
        print(f"  not registered, left out: {', '.join(sfm.unregistered)}")
    m = index_colmap_model(sfm.model_dir, args.images, conf, args.map_frame, progress=not args.quiet, **parallel)
    m.metadata.setdefault("source", {})["structure_from_motion"] = {
        "tool": "pycolmap", "model": str(sfm.model_dir), "registered": sfm.registered,
        "unregistered": sfm.unregistered, "metric": False}
    print("  poses from structure from motion: COLMAP's frame, up to an unknown scale (not metres)")
    return m


def _cmd_localize(args) -> int:
    from ..evaluation import format_timing_table, timing_table
    from ..localizer import STAGES, Localizer, conf_for_map
    from ..map.storage import read_map
    from ..pipeline import localize_image_folder, write_localization_results

    from ..errors import InputError

    kapture_set = None
    if args.kapture is not None:
        from ..io.kapture import read_kapture

        if args.images is not None or args.queries is not None or args.bag is not None:
            raise InputError("--kapture takes the images and cameras from the data set; drop --images/--queries/--bag")
        kapture_set = read_kapture(args.kapture)
        args.images = kapture_set.images_dir
    if args.bag is None and kapture_set is None and (args.images is None or args.queries is None):
        raise InputError("give --images and --queries, or --kapture DIR, or --bag and --image-topic")
    if args.bag is not None and args.image_topic is None:
        raise InputError("--bag needs --image-topic (see `global-loc inspect --bag BAG`)")
    rig_topics = None
    if args.image_topic is not None:
        if len(args.image_topic) > 1:
            rig_topics = args.image_topic
            if args.bag is None:
                raise InputError("several --image-topic make a rig: give --bag")
            if (args.out_bag is not None or args.camera_info_topic is not None or args.camera_frame
                    or args.every != 1 or args.cameras is not None):
                raise InputError("a rig's bag (several --image-topic) takes no --out-bag, --camera-info-topic, "
                                 "--camera-frame, --cameras or --every yet (each camera's camera_info and "
                                 "frame are read from its own topics)")
        args.image_topic = args.image_topic[0]
    if kapture_set is not None:
        queries = kapture_set.cameras()
    else:
        queries = _query_cameras(args.queries, args.images) if args.bag is None else None
    map_index = read_map(args.map)
    settings = {"tracking.enabled": None if args.bag is None or args.tracking is None else args.tracking == "on",
                "refinement.method": args.refine}
    conf = conf_for_map(map_index, args.preset, args.overrides, args.models_dir, args.device, settings)
    localizer = Localizer(map_index, conf)
    if rig_topics is not None:
        return _localize_rig_bag(args, localizer, rig_topics)
    if args.bag is not None:
        return _localize_bag(args, localizer)
    run = localize_image_folder(localizer, args.images, queries, progress=not args.quiet,
                                focal_unknown=getattr(queries, "guessed", ()))
    extra = {"map": str(args.map), "preset": localizer.conf.name, "version": __version__}
    results, log = write_localization_results(args.out, run, extra)
    n_loc = len(run.localized)
    print(f"localized {n_loc} of {len(run.outcomes)} queries -> {results} (log: {log})")
    _print_ambiguous([o.result for o in run.outcomes])
    if kapture_set is not None:
        from ..io.kapture import write_kapture_results

        out_k = write_kapture_results(args.out.with_name(args.out.stem + "_kapture"), kapture_set, run.localized)
        print(f"  as kapture: {out_k} (trajectories of the localized queries); {results} is in the "
              "visuallocalization.net submission format (name qw qx qy qz tx ty tz, cam_from_world)")
    failed = [o for o in run.outcomes if not o.result.success]
    for o in failed[:10]:
        print(f"  {o.name}: {o.result.status.value}: {o.result.reason}")
    if len(failed) > 10:
        print(f"  ... and {len(failed) - 10} more (see the log)")
    _print_refinement([o.result for o in run.outcomes])
    if run.outcomes:
        print(format_timing_table(timing_table([o.result.timings for o in run.outcomes], STAGES)))
    return 0


def _query_cameras(path, images) -> dict:
    """The query list; a query listed by name alone gets its camera from its EXIF (or COLMAP's
    guess), and the user is told which ones were guessed."""
    from ..io.text import read_query_list
    from ..map.sfm import infer_camera

    queries = _Queries(read_query_list(path))
    unknown = [n for n, c in queries.items() if c is None]
    if not unknown:
        return queries
    if not Path(images).is_dir():
        raise GlobalLocError(f"image folder {images} does not exist")
    guessed, from_exif = [], []
    for name in unknown:
        if not (Path(images) / name).is_file():
            continue  # localize_image_folder names the missing images, all at once
        queries[name], exif = infer_camera(Path(images) / name)
        (from_exif if exif else guessed).append(name)
    if from_exif:
        print(f"camera of {len(from_exif)} quer{'y' if len(from_exif) == 1 else 'ies'} from EXIF: "
              f"{_names(from_exif)}")
    if guessed:
        print(f"camera of {len(guessed)} quer{'y' if len(guessed) == 1 else 'ies'} guessed (no EXIF focal length): "
              f"PnP estimates the focal length from 1.2 x the larger side, COLMAP's default; give 'name MODEL W H "
              f"PARAMS' lines where the calibration is known: {_names(guessed)}")
    queries.guessed = set(guessed) | set(from_exif)
    return queries


class _Queries(dict):
    """A query list, and the names whose camera was inferred (``guessed``)."""

    guessed: set = set()


def _names(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _print_ambiguous(results) -> None:
    """One line on the queries where two places that look alike both fit: refused, or settled
    by the pose prior."""
    refused = sum(1 for r in results if r.ambiguity and not r.success)
    chosen = sum(1 for r in results if r.ambiguity and r.success)
    if refused:
        print(f"  {refused} refused as ambiguous: two places that look alike both fit with poses that disagree "
              "(the log's 'ambiguity' says which; localization.ambiguity_min_ratio)")
    if chosen:
        print(f"  {chosen} ambiguous but settled by the tracking prior (the log's 'ambiguity.chosen_by')")


def _print_refinement(results) -> None:
    """One line on feature-metric refinement (when it ran): poses refined, and why the others
    kept PnP's."""
    tried = [r.refinement for r in results if r.refinement]
    if not tried:
        return
    kept = [t for t in tried if not t.get("accepted")]
    reasons: dict[str, int] = {}
    for t in kept:
        key = t.get("reason", "").split(";")[0].split(" < ")[-1].split(" > ")[-1] or "?"
        reasons[key] = reasons.get(key, 0) + 1
    why = ", ".join(f"{n} x {k}" for k, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    print(f"feature-metric refinement: {len(tried) - len(kept)} of {len(tried)} poses refined"
          + (f"; {len(kept)} kept PnP's pose ({why})" if kept else ""))


def _localize_bag(args, localizer) -> int:
    from ..evaluation import format_timing_table, timing_table
    from ..localizer import STAGES
    from ..pipeline import localize_bag, write_bag_results
    from ..ros.frame_handler import FrameConfig

    frames = FrameConfig(map_frame=args.map_frame if args.map_frame != "map" else localizer.map.frame_id,
                         odom_frame=args.odom_frame, base_frame=args.base_frame,
                         camera_frame=args.camera_frame or "")
    run = localize_bag(localizer, args.bag, args.image_topic, args.camera_info_topic, _bag_camera(args),
                       frames, args.every, progress=not args.quiet)
    extra = {"map": str(args.map), "bag": str(args.bag), "image_topic": args.image_topic,
             "preset": localizer.conf.name, "version": __version__}
    tum, log = write_bag_results(run, args.out, args.out_bag, args.out_bag_format, extra=extra)
    n = len(run.publications)
    modes = [p.result.mode for p in run.publications if p.localized]
    print(f"localized {run.num_localized} of {n} frames ({modes.count('tracking')} tracked against the local map, "
          f"{modes.count('flow')} by optical flow, {modes.count('global')} by global query) -> {tum} (log: {log})"
          + (f", bag: {args.out_bag}" if args.out_bag else ""))
    _print_ambiguous([p.result for p in run.publications])
    _print_refinement([p.result for p in run.publications if p.localized])
    notes = {p.note for p in run.publications if p.note}
    for note in list(notes)[:3]:
        print(f"  note: {note}")
    if n:
        print(format_timing_table(timing_table([p.result.timings for p in run.publications], STAGES)))
    return 0


def _localize_rig_bag(args, localizer, topics: list[str]) -> int:
    """``localize --bag B --image-topic T1 --image-topic T2 ...``: one base pose per rig frame,
    a TUM trajectory of ``map_from_base`` and a JSON log."""
    import numpy as np

    from ..evaluation import format_timing_table, timing_table
    from ..io.text import write_tum
    from ..pipeline import localize_bag_rig, log_path_for

    frames = localize_bag_rig(localizer, args.bag, topics, args.base_frame, progress=not args.quiet,
                              odom_frame=args.odom_frame)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_tum(args.out, [(f.stamp_ns * 1e-9, f.map_from_base) for f in frames if f.map_from_base is not None])
    log = log_path_for(args.out)
    log.write_text(json.dumps({"map": str(args.map), "bag": str(args.bag), "image_topics": topics,
                               "base_frame": args.base_frame, "preset": localizer.conf.name, "version": __version__,
                               "queries": [{"name": f.names[0] or str(f.stamp_ns), "stamp": f.stamp_ns * 1e-9,
                                            "images": f.names, **f.result.to_log()} for f in frames]}, indent=1))
    ok = [f for f in frames if f.result.success]
    fallback = [f.result.rig.get("fallback") for f in ok]
    tracked = sum(1 for f in ok if f.result.mode == "rig_tracking")
    print(f"localized {len(ok)} of {len(frames)} rig frames ({len(topics)} cameras; "
          f"{sum(1 for c in fallback if c is None) - tracked} from all cameras' matches, "
          f"{sum(1 for c in fallback if c is not None)} from one camera alone, {tracked} tracked against the "
          f"local map) -> {args.out} (log: {log})")
    if ok:
        per_camera = np.median([f.result.rig["inliers_per_camera"] for f in ok], axis=0)
        print("  inliers per camera (median): " + ", ".join(f"{t} {v:.0f}" for t, v in zip(topics, per_camera)))
        print(format_timing_table(timing_table([f.result.timings for f in frames],
                                               ["local_features", "global_descriptor", "retrieval", "clustering",
                                                "local_map", "matching", "pnp", "total"])))
    return 0


def _cmd_inspect(args) -> int:
    from ..io.bags import inspect_bag

    print(inspect_bag(args.bag).format_text())
    return 0


def _cmd_map_info(args) -> int:
    from ..map.info import format_map_info, map_info

    info = map_info(args.map, verify=args.verify, keyframes=args.keyframes)
    print(json.dumps(info, indent=1) if args.json else format_map_info(info))
    return 0


def _cmd_map_prune(args) -> int:
    from ..errors import InputError
    from ..map.edit import prune_keyframes, select_keyframes
    from ..map.storage import read_map, write_map

    names = list(args.keyframes)
    if args.keyframe_list is not None:
        try:
            lines = args.keyframe_list.read_text().splitlines()
        except OSError as e:
            raise InputError(f"cannot read --keyframe-list {args.keyframe_list}: {e.strerror}") from None
        names += [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]
    m = read_map(args.map)
    rows = select_keyframes(m, names, args.before)
    pruned, stats = prune_keyframes(m, rows)
    dtype = "float32" if m.obs_descriptors.dtype.itemsize == 4 else "float16"
    write_map(pruned, args.out, descriptor_dtype=dtype)
    print(f"{args.out}: {stats.format_text()}")
    return 0


def _cmd_map_merge(args) -> int:
    from ..localizer import conf_for_map
    from ..map.merge import align_maps, merge_maps
    from ..map.storage import read_map, write_map

    a, b = read_map(args.a), read_map(args.b)
    conf = conf_for_map(a, None, args.overrides)
    alignment = align_maps(a, b, conf, rigid=args.rigid, max_error_m=args.max_error_m,
                           max_error_deg=args.max_error_deg, min_agreeing=args.min_agreeing,
                           progress=not args.quiet)
    print(alignment.format_text())
    if args.align_only:
        return 0
    merged = merge_maps(a, b, alignment, conf_for_map(a), prefix=args.prefix, progress=not args.quiet)
    dtype = "float32" if a.obs_descriptors.dtype.itemsize == 4 else "float16"
    write_map(merged, args.out, descriptor_dtype=dtype)
    edit = merged.metadata["edits"][-1]
    print(f"{args.out}: added {edit['added_keyframes']} keyframes of B: {edit['extended_observations']} observations "
          f"added to A's points, {edit['new_points']} new points; {merged.summary()}")
    return 0


def _cmd_synth(args) -> int:
    from ..errors import InputError
    from ..synthetic.world import CAMERA_YAW_DEG, WorldConfig, generate_world

    t0 = time.perf_counter()
    if not 0 < args.query_rate <= 1000:
        raise InputError(f"--query-rate must be in (0, 1000] Hz, got {args.query_rate}")
    make = WorldConfig.twin_rooms if args.layout == "twin-rooms" else WorldConfig
    cameras = tuple(c.strip() for c in args.cameras.split(",") if c.strip())
    unknown = [c for c in cameras if c not in CAMERA_YAW_DEG]
    if unknown or not cameras or len(set(cameras)) != len(cameras):
        raise InputError(f"--cameras must name distinct cameras among {', '.join(CAMERA_YAW_DEG)}, got {args.cameras!r}")
    config = make(seed=args.seed, query_duration_s=args.query_seconds, query_camera_rate_hz=args.query_rate,
                  cameras=cameras)
    worlds = generate_world(args.out, config, args.format, args.compressed, args.textures,
                            progress=not args.quiet)
    w = next(iter(worlds.values()))
    print(f"synthetic world in {args.out} ({time.perf_counter() - t0:.1f} s)")
    for run in (w.mapping, w.query, w.kidnap):
        if run is not None:
            print(f"  {run.bag}: {run.frames} frames on {', '.join(run.image_topics)}; ground truth "
                  f"{run.base_ground_truth_tum} (base_link), {run.ground_truth_tum} (camera)")
    return 0


def _cmd_replay(args) -> int:
    try:
        from ..ros.replay import replay
    except ImportError as e:
        raise GlobalLocError(
            f"global-loc replay needs ROS 2's Python packages ({e.name} is missing): source a ROS 2 "
            "installation (Humble or newer), or install the ROS 2 wheels the README lists under 'Install' "
            "(make install does)"
        ) from None
    stats = replay(args.bag, args.topics, args.rate, args.loops, args.clock, args.qos, args.wait_for,
                   args.wait_timeout, progress=not args.quiet)
    print(stats.format())
    return 130 if stats.interrupted else 0


def _cmd_time_query(args) -> int:
    from ..benchmarking import format_header, run_time_query

    report = run_time_query(args.map, args.images, args.queries, args.preset, args.overrides, args.models_dir,
                            args.device, args.backend, args.max_num_queries, args.warmup,
                            progress=not args.quiet)
    print(format_header(report["header"]))
    print(report["table_markdown"])
    print(f"peak memory: host {report['memory']['peak_rss_mib']:.0f} MiB"
          + (f", GPU {report['memory']['gpu_peak_mib']:.0f} MiB" if report["memory"].get("gpu_peak_mib") else ""))
    print(f"localized {report['localized']} of {report['timed']} timed queries")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


def _cmd_export(args) -> int:
    from ..config import load_preset
    from ..runtime.export import export_preset

    conf = load_preset(args.preset, args.overrides)
    if args.models_dir:
        conf.models_dir = str(args.models_dir)
    written = export_preset(conf, args.out, check=args.check)
    if not written:
        print(f"preset '{conf.name}' has no learned network to export")
    for path, diff in written:
        print(f"{path}" + (f"  (ONNX Runtime vs PyTorch: largest difference {diff:.2e})" if diff is not None else ""))
    return 0


def _cmd_convert(args) -> int:
    from ..convert import convert

    out = convert(args.tf, args.model, args.out)
    print(f"wrote {out}")
    return 0


def _logged_covariances(entries: list[dict], key, log_path) -> dict:
    """``key(entry) -> (6, 6) covariance`` of the localized log entries that carry one.

    Raises:
        InputError: a covariance that is not 6x6 finite numbers.
    """
    import numpy as np

    from ..errors import InputError

    out = {}
    for q in entries:
        if q.get("status") not in LOCALIZED_NAMES or "covariance" not in q:
            continue
        try:
            c = np.asarray(q["covariance"], np.float64)
        except (TypeError, ValueError):
            c = np.zeros(0)
        if c.shape != (6, 6) or not np.all(np.isfinite(c)):
            raise InputError(f"{log_path}: the covariance of {q.get('name', q.get('stamp'))} is not 6x6 finite "
                             "numbers; was the log written by another tool? Remove it to evaluate without it")
        out[key(q)] = c
    return out


def _cmd_evaluate(args) -> int:
    from ..evaluation import evaluate_poses, parse_thresholds
    from ..io.text import read_cameras, read_poses
    from ..pipeline import log_path_for

    thresholds = parse_thresholds(args.thresholds)
    if args.retrieval is not None:
        return _evaluate_retrieval(args)
    if args.results.suffix == ".tum" or args.gt.suffix == ".tum":
        return _evaluate_tum(args, thresholds)
    estimates = read_poses(args.results)
    gt = read_poses(args.gt)
    status: dict[str, str] = {}
    covariances = {}
    log = json.loads(log_path_for(args.results).read_text()) if log_path_for(args.results).exists() else None
    if log is not None:  # the covariances the localizer reported, for the consistency table
        covariances = _logged_covariances(log.get("queries", []), lambda q: q["name"], log_path_for(args.results))
    if args.queries is not None:
        queries = list(read_cameras(args.queries))
    elif log is not None:
        queries = [q["name"] for q in log.get("queries", [])]
        status = {q["name"]: f"{q['status']}: {q.get('reason', '')}" for q in log.get("queries", [])
                  if q["status"] not in LOCALIZED_NAMES}
    else:
        logger.warning("no query list and no log beside %s: only localized queries are counted",
                       args.results)
        queries = list(estimates)
    if args.align:
        from ..evaluation import align_similarity

        alignment = align_similarity({n: e for n, e in estimates.items() if n in set(queries)}, gt)
        print(alignment.format())
        estimates = {n: alignment.apply(e) for n, e in estimates.items()}
        covariances = {}  # in the estimate's units: not comparable after scaling
    report = evaluate_poses(estimates, gt, queries, thresholds, status, covariances)
    print(report.format())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=1))
    if args.plot is not None:
        from ..evaluation import plot_queries

        plot_queries(args.plot, gt, estimates, report)
        print(f"plot: {args.plot}")
    return 0


def _evaluate_retrieval(args) -> int:
    """``evaluate --retrieval LOG``: recall@N of the keyframes each global query retrieved."""
    import numpy as np

    from ..errors import InputError
    from ..io.text import read_poses, read_tum
    from ..retrieval.recall import evaluate_retrieval, parse_positive, plot_recall

    max_m, max_deg = parse_positive(args.positive)
    try:
        entries = json.loads(args.retrieval.read_text()).get("queries", [])
    except (OSError, ValueError, AttributeError) as e:
        raise InputError(f"{args.retrieval}: not a JSON log of global-loc localize ({e})") from None
    if args.gt.suffix == ".tum":  # a bag's log: queries by stamp, ground truth map_from_camera
        truth = read_tum(args.gt)
        stamps = np.array([s for s, _ in truth])
        query_poses, retrieved = {}, {}
        for q in entries:
            if "stamp" not in q or len(stamps) == 0:
                continue
            i = int(np.argmin(np.abs(stamps - q["stamp"])))
            if abs(stamps[i] - q["stamp"]) <= args.max_dt:
                key = f"{q['stamp']:.9f}"
                query_poses[key] = truth[i][1].inverse()
                retrieved[key] = q.get("retrieved") or []
    else:
        retrieved = {q["name"]: q.get("retrieved") or [] for q in entries if "name" in q}
        # the queries are the log's entries; the ground truth may hold the mapping images too
        query_poses = {n: p for n, p in read_poses(args.gt).items() if n in retrieved}
    if args.map is None:
        raise InputError("--retrieval needs --map: the positives are the map's keyframes near each query, "
                         "and only the map knows all of them")
    from ..map.storage import read_map

    m = read_map(args.map)
    keyframes = {n: m.cam_from_world(i) for i, n in enumerate(m.names)}
    report = evaluate_retrieval(retrieved, query_poses, keyframes, max_m, max_deg, args.recall_at)
    print(report.format())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=1))
    if args.plot is not None:
        plot_recall(args.plot, {args.retrieval.stem: report})
        print(f"plot: {args.plot}")
    return 0


def _evaluate_tum(args, thresholds) -> int:
    from ..evaluation import evaluate_trajectory, plot_trajectories
    from ..io.text import read_tum
    from ..pipeline import log_path_for

    est, gt = read_tum(args.results), read_tum(args.gt)
    stamps, status, covariances = None, {}, {}
    log_path = log_path_for(args.results)
    if log_path.exists():
        log = json.loads(log_path.read_text())
        entries = log.get("queries", [])
        stamps = [q["stamp"] for q in entries]
        status = {f"{q['stamp']:.9f}": f"{q['status']}: {q.get('reason', '')}" for q in entries
                  if q["status"] not in LOCALIZED_NAMES}
        covariances = _logged_covariances(entries, lambda q: f"{q['stamp']:.9f}", log_path)
    report = evaluate_trajectory(est, gt, stamps, thresholds, args.max_dt, status, covariances)
    print(report.format())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=1))
    if args.plot is not None:
        plot_trajectories(args.plot, gt, est, report)
        print(f"plot: {args.plot}")
    return 0


# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``global-loc``; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logger.setLevel(logging.DEBUG if args.verbose else (logging.WARNING if args.quiet else logging.INFO))
    if args.command is None:
        parser.print_help()
        return 2
    previous = _terminate_like_interrupt()
    try:
        return int(args.func(args) or 0)
    except GlobalLocError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # an optional package missing: one line with the install command
        from ..errors import missing_dependency

        missing = missing_dependency(e)
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated (SIGTERM): stopped; nothing was written but what had been finished", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted: stopped; nothing was written but what had been finished", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `global-loc ... | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a supervisor, ``kill`` or ``docker stop`` sends), handled as Ctrl-C is:
    workers stopped, nothing half-written (maps are written to a temporary file and renamed)."""


def _terminate_like_interrupt():
    """Make SIGTERM raise :class:`Terminated` in the main thread (also in place of the glog
    handler that pycolmap installs, which prints a stack dump); returns the previous handler,
    or None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:  # pycolmap's glog takes SIGTERM over when it loads: load it first, then take it back
        import pycolmap  # noqa: F401
    except ImportError:
        pass

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
