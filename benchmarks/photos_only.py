"""Maps from photos alone (structure from motion with pycolmap), measured.

1. The temple ring's even views as photos without poses -> a map (``global-loc index --images``);
   the odd views localized in it with a query list of names alone (cameras from EXIF, which the
   temple's PNGs lack: PnP estimates the focal length), and, for comparison, with the given
   calibration, and with a map whose cameras were given (``--cameras``). Each run is aligned to
   the ground truth by one similarity transform over all its localized queries
   (``global-loc evaluate --align``): the camera-centre residuals, in metres after scale.
2. sacre_coeur: the 10 photos mapped (which register), then each photo localized against a
   map of the other nine (its own structure from motion), its pose compared with the one the
   ten-photo reconstruction gives it, after aligning the nine-photo frame to the ten-photo
   frame by a similarity over the nine shared photos. No metric scale there: position errors
   are given relative to the median distance between camera centres.

    python benchmarks/photos_only.py [--data ../shared/data] [--out benchmarks/results/photos_only.md]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from global_loc.cli.main import main as cli  # noqa: E402
from global_loc.evaluation import align_similarity  # noqa: E402
from global_loc.geometry.transforms import pose_error  # noqa: E402
from global_loc.io.text import read_poses  # noqa: E402
from global_loc.map.storage import read_map  # noqa: E402


def run(args: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli(["-q", *args])
    if rc != 0:
        raise SystemExit(f"global-loc {' '.join(args)} failed ({rc}):\n{out.getvalue()}")
    return out.getvalue()


def map_poses(path: Path) -> dict:
    m = read_map(path)
    return {n: m.cam_from_world(i) for i, n in enumerate(m.names)}


def temple(data: Path, work: Path) -> list[str]:
    t = data / "temple_ring"
    gt = read_poses(t / "poses_cam_from_world.txt")
    cams = (t / "cameras.txt").read_text().splitlines()
    number = lambda line: int(line.split()[0][7:11])  # noqa: E731
    (work / "map_list.txt").write_text("\n".join(l.split()[0] for l in cams if number(l) % 2 == 0) + "\n")
    (work / "map_cameras.txt").write_text("\n".join(l for l in cams if number(l) % 2 == 0) + "\n")
    (work / "q_names.txt").write_text("\n".join(l.split()[0] for l in cams if number(l) % 2 == 1) + "\n")
    (work / "q_cal.txt").write_text("\n".join(l for l in cams if number(l) % 2 == 1) + "\n")
    rows = ["| map | query cameras | localized | residual median | residual max | median error | time: SfM + index |",
            "|---|---|---:|---:|---:|---:|---:|"]
    maps = {}
    for name, extra in (("photos alone", []), ("photos alone, --single-camera", ["--single-camera"]),
                        ("photos + given cameras (--cameras)", ["--cameras", str(work / "map_cameras.txt")])):
        path = work / f"temple_{len(maps)}.glmap"
        t0 = time.perf_counter()
        run(["index", "--images", str(t / "images"), "--image-list", str(work / "map_list.txt"), "--out", str(path),
             *extra])
        maps[name] = (path, time.perf_counter() - t0)
    for name, queries in (("photos alone", "q_names.txt"), ("photos alone", "q_cal.txt"),
                          ("photos alone, --single-camera", "q_names.txt"),
                          ("photos + given cameras (--cameras)", "q_cal.txt")):
        path, took = maps[name]
        res = work / f"res_{len(rows)}.txt"
        run(["localize", "--map", str(path), "--images", str(t / "images"), "--queries", str(work / queries),
             "--out", str(res)])
        est = read_poses(res)
        al = align_similarity(est, gt)
        errs = [pose_error(al.apply(est[n]), gt[n]) for n in al.names]
        dt, dr = np.median([e[0] for e in errs]), np.median([e[1] for e in errs])
        what = "names alone: EXIF, else focal estimated by PnP" if queries == "q_names.txt" else "given calibration"
        rows.append(f"| {name} | {what} | {len(est)}/24 | {1e3 * np.median(al.residuals_m):.1f} mm | "
                    f"{1e3 * al.residuals_m.max():.1f} mm | {1e3 * dt:.1f} mm, {dr:.2f} deg | {took:.1f} s |")
        print(rows[-1], flush=True)
    return rows


def sacre_coeur(data: Path, work: Path) -> list[str]:
    photos = data / "sacre_coeur" / "mapping"
    names = sorted(p.name for p in photos.iterdir())
    full = work / "sc_all.glmap"
    out = run(["index", "--images", str(photos), "--out", str(full)])
    reference = map_poses(full)
    lines = [f"All {len(names)} photos: {out.splitlines()[1].strip()}", ""]
    centres = np.array([p.inverse().t for p in reference.values()])
    spread = float(np.median(np.linalg.norm(centres[:, None] - centres[None], axis=2)[np.triu_indices(len(centres), 1)]))
    lines += [f"Median distance between camera centres in the ten-photo reconstruction: {spread:.3f} (its units).", "",
              "| held-out photo | 9-photo SfM registered | localized | inliers | position error / median baseline "
              "| rotation error |", "|---|---:|---|---:|---:|---:|"]
    for held in names:
        if held not in reference:
            lines.append(f"| {held} | - | not in the ten-photo reconstruction | | | |")
            continue
        nine = work / f"sc_without_{held}.glmap"
        (work / "list.txt").write_text("\n".join(n for n in names if n != held) + "\n")
        try:
            run(["index", "--images", str(photos), "--image-list", str(work / "list.txt"), "--out", str(nine)])
        except SystemExit as e:
            lines.append(f"| {held} | failed: {str(e).splitlines()[-1][:80]} | | | | |")
            continue
        nine_poses = map_poses(nine)
        (work / "q.txt").write_text(held + "\n")
        res = work / "sc_res.txt"
        run(["localize", "--map", str(nine), "--images", str(photos), "--queries", str(work / "q.txt"),
             "--out", str(res)])
        log = json.loads((work / "sc_res_log.json").read_text())["queries"][0]
        est = read_poses(res)
        if held not in est:
            lines.append(f"| {held} | {len(nine_poses)}/9 | no: {log['status']}: {log.get('reason', '')[:60]} | "
                         f"{log['num_inliers']} | | |")
            continue
        al = align_similarity(nine_poses, reference)  # the nine-photo frame -> the ten-photo frame
        dt, dr = pose_error(al.apply(est[held]), reference[held])
        lines.append(f"| {held} | {len(nine_poses)}/9 | yes | {log['num_inliers']} | {dt / spread:.3f} | {dr:.2f} deg |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "photos_only.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        rows = temple(args.data, work)
        sc = sacre_coeur(args.data, work)
        took = time.perf_counter() - t0
    text = "\n".join([
        "# Maps from photos alone", "",
        f"`python benchmarks/photos_only.py` (one run, {took / 60:.1f} min on this machine). Structure from motion: "
        "pycolmap (COLMAP's SIFT, exhaustive matching, incremental mapping), then `global-loc index` from its "
        "reconstruction with the default preset.", "",
        "## Temple ring: 23 even views as photos without poses, the 24 odd views localized", "",
        "Each row is aligned to the ground truth by one similarity over all its localized queries "
        "(`global-loc evaluate --align`); residuals are camera-centre distances after the alignment, metres.", "",
        *rows, "",
        "## sacre_coeur: each photo against a map of the other nine", "", *sc, ""])
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
