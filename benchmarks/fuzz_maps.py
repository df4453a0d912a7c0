"""Fuzz the map reader: mutated map files of five families (``global_loc.map.fuzz``), each read
with ``read_map`` and, when accepted, localized.

The map: the temple's even views 2-24 (12 keyframes, 2 MiB, default preset), built here. Every
accepted map is localized with one of three temple queries near those views, in turn; a pose beyond
(5 cm, 5 deg) is a wrong pose. A read that takes longer than ``--hang-s`` is a hang (SIGALRM).

    python benchmarks/fuzz_maps.py [--per-family 20000] [--seed 0] [--out benchmarks/results/fuzz_maps.md]

Prints, per family: inputs tried, clean errors, accepted (and how they localized), and
failures by kind (raw exceptions, hangs, wrong poses), with an example of each.
"""
from __future__ import annotations

import argparse
import collections
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from global_loc.cli.main import main as cli  # noqa: E402
from global_loc.errors import GlobalLocError  # noqa: E402
from global_loc.geometry.transforms import pose_error  # noqa: E402
from global_loc.io.images import read_image  # noqa: E402
from global_loc.io.text import read_cameras, read_poses  # noqa: E402
from global_loc.localizer import Localizer  # noqa: E402
from global_loc.map.fuzz import FAMILIES, mutations  # noqa: E402
from global_loc.map.storage import read_map  # noqa: E402

QUERIES = ("templeR0005.png", "templeR0011.png", "templeR0017.png")


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--per-family", type=int, default=20000, help="inputs of each family (default 20000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hang-s", type=int, default=20, help="a read or localization longer than this is a hang")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz_maps.md")
    args = ap.parse_args()
    temple = args.data / "temple_ring"
    cams, gt = read_cameras(temple / "cameras.txt"), read_poses(temple / "poses_cam_from_world.txt")
    queries = [(q, read_image(temple / "images" / q), cams[q], gt[q]) for q in QUERIES]
    signal.signal(signal.SIGALRM, _alarm)
    warnings.simplefilter("ignore", RuntimeWarning)  # NaN descriptors in matching are expected here
    rows, examples = [], {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = [l for l in (temple / "poses_cam_from_world.txt").read_text().splitlines()
                 if int(l.split()[0][7:11]) % 2 == 0 and int(l.split()[0][7:11]) <= 24]
        (tmp / "poses.txt").write_text("\n".join(lines) + "\n")
        good = tmp / "good.glmap"
        assert cli(["-q", "index", "--images", str(temple / "images"), "--poses", str(tmp / "poses.txt"),
                    "--cameras", str(temple / "cameras.txt"), "--out", str(good)]) == 0
        raw = good.read_bytes()
        path = tmp / "input.glmap"
        for family in FAMILIES:
            c = collections.Counter()
            t0 = time.perf_counter()
            for i, (what, data) in enumerate(mutations(raw, family, args.per_family, seed=args.seed)):
                path.write_bytes(data)
                kind = None
                signal.alarm(args.hang_s)
                try:
                    m = read_map(path)
                    try:
                        loc = Localizer(m)
                        localized = 0
                        for name, image, camera, truth in queries[i % 3:i % 3 + 1]:  # one query, in turn
                            r = loc.localize(image, camera)
                            if r.success:
                                dt, dr = pose_error(r.cam_from_world, truth)
                                if dt > 0.05 or dr > 5:
                                    kind = "wrong pose"
                                    what += f" ({name}: {dt:.3f} m, {dr:.1f} deg, {r.num_inliers} inliers)"
                                    break
                                localized += 1
                        else:
                            kind = "accepted, localized right" if localized else "accepted, not localized"
                    except GlobalLocError:
                        kind = "accepted, clean error when localizing"
                except GlobalLocError:
                    kind = "clean error"
                except Hang:
                    kind = "hang"
                except Exception as e:  # noqa: BLE001 - what this counts
                    kind = f"raw {type(e).__name__}"
                    what += f": {str(e)[:120]}"
                finally:
                    signal.alarm(0)
                c[kind] += 1
                if not kind.startswith(("clean", "accepted")):
                    examples.setdefault(kind, f"{family}, {what}")
            took = time.perf_counter() - t0
            accepted = sum(v for k, v in c.items() if k.startswith("accepted"))
            failures = {k: v for k, v in c.items() if not k.startswith(("clean", "accepted"))}
            how = ", ".join(f"{k[len('accepted, '):]}: {v}" for k, v in sorted(c.items()) if k.startswith("accepted"))
            rows.append(f"| {family} | {sum(c.values())} | {c['clean error']} | {accepted} ({how or '-'}) | "
                        f"{', '.join(f'{k}: {v}' for k, v in failures.items()) or '0'} | {took:.0f} s |")
            print(rows[-1], flush=True)
    total = time.perf_counter() - t_start
    n = args.per_family * len(FAMILIES)
    text = "\n".join([
        "# Fuzzing the map reader", "",
        f"`python benchmarks/fuzz_maps.py --per-family {args.per_family} --seed {args.seed}`: {n:,} inputs in "
        f"{total / 60:.1f} min on this machine (one run). Map: the temple's even views 2-24 (12 keyframes, "
        f"{len(raw) / 2**20:.1f} MiB); every accepted map localizes one of 3 temple queries (in turn), a pose beyond (5 cm, 5 deg) "
        "counts as wrong; a read or localization of more than "
        f"{args.hang_s} s counts as a hang.", "",
        "| family | inputs | clean errors | accepted (how its query went) | failures | time |",
        "|---|---:|---:|---|---|---:|", *rows, "",
        *(f"- {k}: {v}" for k, v in examples.items()), ""])
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
