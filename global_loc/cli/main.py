"""The ``global-loc`` command.

Subcommands mirror the stages of :mod:`global_loc.pipeline`:

- ``global-loc index``: build a map (image folder + poses + cameras, or a COLMAP model).
- ``global-loc localize``: localize query images against a map.
- ``global-loc evaluate``: recall and errors of localization results against ground truth.

A mistake in the input (a missing file, an unknown camera model, a map of another version)
prints one line, ``error: ...``, and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .. import __version__
from ..errors import GlobalLocError

logger = logging.getLogger("global_loc")


def _add_preset_args(p: argparse.ArgumentParser, default_from_map: bool = False) -> None:
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
    src.add_argument("--cameras", type=Path, help="camera list: name MODEL WIDTH HEIGHT PARAMS... (hloc)")
    col = p.add_argument_group("keyframes from a COLMAP reconstruction")
    col.add_argument("--colmap", type=Path, metavar="MODEL_DIR", help="COLMAP model folder (text or binary)")
    p.add_argument("--out", type=Path, required=True, help="map file to write")
    p.add_argument("--frame-id", default="map", help="name of the map frame (default: map)")
    p.add_argument(
        "--descriptor-dtype", choices=["float16", "float32"], default="float16",
        help="storage of local descriptors (default: float16)",
    )
    _add_preset_args(p)
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("localize", help="localize query images against a map")
    p.add_argument("--map", type=Path, required=True, help="map file")
    p.add_argument("--images", type=Path, required=True, help="query image folder")
    p.add_argument("--queries", type=Path, required=True,
                   help="query list: name MODEL WIDTH HEIGHT PARAMS... (hloc)")
    p.add_argument("--out", type=Path, required=True,
                   help="results: name qw qx qy qz tx ty tz per localized query; a JSON log "
                        "of every query is written beside it (<stem>_log.json)")
    _add_preset_args(p, default_from_map=True)
    p.set_defaults(func=_cmd_localize)

    p = sub.add_parser("evaluate", help="recall and errors against ground-truth poses")
    p.add_argument("--results", type=Path, required=True, help="results of global-loc localize")
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
    p.set_defaults(func=_cmd_evaluate)
    return parser


# --------------------------------------------------------------------------------------------
def _cmd_index(args) -> int:
    from ..config import load_preset
    from ..io.text import read_cameras, read_poses
    from ..map.storage import write_map
    from ..pipeline import index_colmap_model, index_image_folder
    from ..errors import InputError

    conf = load_preset(args.preset, args.overrides)
    t0 = time.perf_counter()
    if args.colmap is not None:
        if args.images is None:
            raise InputError("--colmap needs --images, the folder of the model's images")
        if args.poses is not None or args.cameras is not None:
            raise InputError("--colmap takes poses and cameras from the model; drop --poses/--cameras")
        m = index_colmap_model(args.colmap, args.images, conf, args.frame_id, progress=not args.quiet)
    else:
        missing = [f for f in ("images", "poses", "cameras") if getattr(args, f) is None]
        if missing:
            raise InputError(
                "give --images, --poses and --cameras (missing: "
                + ", ".join("--" + m for m in missing) + "), or --colmap MODEL_DIR --images DIR"
            )
        poses = read_poses(args.poses)
        cameras = read_cameras(args.cameras)
        m = index_image_folder(args.images, poses, cameras, conf, args.frame_id, progress=not args.quiet)
    path = write_map(m, args.out, descriptor_dtype=args.descriptor_dtype)
    size = path.stat().st_size / 2**20
    print(f"map: {path} ({size:.1f} MiB), preset '{conf.name}'")
    print(f"  {m.summary()}")
    skipped = m.metadata.get("skipped", {})
    if skipped:
        print(f"  skipped {len(skipped)} frame(s): " + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5]))
    print(f"  built in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_localize(args) -> int:
    from ..evaluation import format_timing_table, timing_table
    from ..io.text import read_cameras
    from ..localizer import STAGES, Localizer
    from ..map.storage import read_map
    from ..pipeline import localize_image_folder, write_localization_results
    from ..config import load_preset

    queries = read_cameras(args.queries)
    map_index = read_map(args.map)
    conf = None
    if args.preset is not None or args.overrides:
        if args.preset is None:
            from ..config import PipelineConf, deep_merge, from_dict, parse_override, to_dict

            base = map_index.metadata.get("preset") or to_dict(load_preset())
            for o in args.overrides:
                base = deep_merge(base, parse_override(o))
            conf = from_dict(PipelineConf, base)
        else:
            conf = load_preset(args.preset, args.overrides)
    localizer = Localizer(map_index, conf)
    run = localize_image_folder(localizer, args.images, queries, progress=not args.quiet)
    extra = {"map": str(args.map), "preset": localizer.conf.name, "version": __version__}
    results, log = write_localization_results(args.out, run, extra)
    n_loc = len(run.localized)
    print(f"localized {n_loc} of {len(run.outcomes)} queries -> {results} (log: {log})")
    failed = [o for o in run.outcomes if not o.result.success]
    for o in failed[:10]:
        print(f"  {o.name}: {o.result.status.value}: {o.result.reason}")
    if len(failed) > 10:
        print(f"  ... and {len(failed) - 10} more (see the log)")
    if run.outcomes:
        print(format_timing_table(timing_table([o.result.timings for o in run.outcomes], STAGES)))
    return 0


def _cmd_evaluate(args) -> int:
    from ..evaluation import evaluate_poses, parse_thresholds
    from ..io.text import read_cameras, read_poses
    from ..pipeline import log_path_for

    thresholds = parse_thresholds(args.thresholds)
    estimates = read_poses(args.results)
    gt = read_poses(args.gt)
    status: dict[str, str] = {}
    if args.queries is not None:
        queries = list(read_cameras(args.queries))
    elif log_path_for(args.results).exists():
        log = json.loads(log_path_for(args.results).read_text())
        queries = [q["name"] for q in log.get("queries", [])]
        status = {q["name"]: f"{q['status']}: {q.get('reason', '')}" for q in log.get("queries", [])
                  if q["status"] != "localized"}
    else:
        logger.warning("no query list and no log beside %s: only localized queries are counted",
                       args.results)
        queries = list(estimates)
    report = evaluate_poses(estimates, gt, queries, thresholds, status)
    print(report.format())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=1))
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
    try:
        return int(args.func(args) or 0)
    except GlobalLocError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
