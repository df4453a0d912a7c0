"""The command line: the happy path is in test_real_data; here, errors a user can make."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from global_loc.cli.main import main


def run(capsys, *argv):
    rc = main(["-q", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_missing_image_is_one_clear_line(temple_split, tmp_path, capsys):
    poses = tmp_path / "poses.txt"
    poses.write_text(temple_split["map_poses"].read_text() + "nothere.png 1 0 0 0 0 0 1\n")
    cams = tmp_path / "cams.txt"
    cams.write_text(temple_split["cameras"].read_text() + "nothere.png PINHOLE 640 480 1 1 1 1\n")
    rc, _, err = run(capsys, "index", "--images", str(temple_split["images"]), "--poses", str(poses),
                     "--cameras", str(cams), "--out", str(tmp_path / "m.glmap"))
    assert rc == 2
    assert err.startswith("error: 1 listed images are not in") and "nothere.png" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.glmap").exists()


def test_image_without_camera(temple_split, tmp_path, capsys):
    cams = tmp_path / "cams.txt"
    cams.write_text("".join(l + "\n" for l in temple_split["cameras"].read_text().splitlines()
                            if not l.startswith("templeR0002.png")))
    rc, _, err = run(capsys, "index", "--images", str(temple_split["images"]), "--poses",
                     str(temple_split["map_poses"]), "--cameras", str(cams), "--out", str(tmp_path / "m"))
    assert rc == 2 and "have no camera" in err and "templeR0002.png" in err


def test_unknown_camera_model(temple_split, tmp_path, capsys):
    cams = tmp_path / "cams.txt"
    cams.write_text(temple_split["cameras"].read_text().replace("PINHOLE", "PINHOLEX", 1))
    rc, _, err = run(capsys, "index", "--images", str(temple_split["images"]), "--poses",
                     str(temple_split["map_poses"]), "--cameras", str(cams), "--out", str(tmp_path / "m"))
    assert rc == 2 and "unknown camera model 'PINHOLEX'" in err and "cams.txt:1" in err


def test_image_size_disagrees_with_camera(temple_split, tmp_path, capsys):
    cams = tmp_path / "cams.txt"
    cams.write_text(temple_split["cameras"].read_text().replace("PINHOLE 640 480", "PINHOLE 320 240"))
    rc, _, err = run(capsys, "index", "--images", str(temple_split["images"]), "--poses",
                     str(temple_split["map_poses"]), "--cameras", str(cams), "--out", str(tmp_path / "m"))
    assert rc == 2 and "is 640x480 but its camera is 320x240" in err


def test_missing_arguments(capsys, tmp_path):
    rc, _, err = run(capsys, "index", "--out", str(tmp_path / "m"))
    assert rc == 2 and "--images, --poses and --cameras" in err


def test_synth_refuses_a_bad_camera_rate(capsys, tmp_path):
    rc = main(["synth", "--out", str(tmp_path / "w"), "--query-rate", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "--query-rate must be in (0, 1000] Hz, got 0.0" in err
    assert not (tmp_path / "w").exists()  # nothing half-made


def test_localize_with_a_bad_map(temple_split, tmp_path, capsys):
    bad = tmp_path / "bad.glmap"
    bad.write_bytes(b"GLOCMAP\x00" + (7).to_bytes(4, "little") + b"\x00" * 20)
    rc, _, err = run(capsys, "localize", "--map", str(bad), "--images", str(temple_split["images"]),
                     "--queries", str(temple_split["queries"]), "--out", str(tmp_path / "r.txt"))
    assert rc == 2 and "schema version 7" in err


@pytest.mark.slow
def test_corrupt_query_fails_alone_and_nothing_is_lost(temple_map, temple_split, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    names = ["templeR0001.png", "templeR0003.png", "templeR0005.png"]
    for n in names:
        shutil.copy(temple_split["images"] / n, images / n)
    (images / "templeR0003.png").write_bytes((images / "templeR0003.png").read_bytes()[:500])
    queries = tmp_path / "q.txt"
    queries.write_text("".join(l + "\n" for l in temple_split["cameras"].read_text().splitlines()
                               if l.split()[0] in names))
    rc, out, _ = run(capsys, "localize", "--map", str(temple_map), "--images", str(images),
                     "--queries", str(queries), "--out", str(tmp_path / "r.txt"))
    assert rc == 0
    log = json.loads((tmp_path / "r_log.json").read_text())
    status = {q["name"]: q for q in log["queries"]}
    assert status["templeR0003.png"]["status"] == "failed"
    assert "cannot be decoded" in status["templeR0003.png"]["reason"]
    assert status["templeR0001.png"]["status"] == status["templeR0005.png"]["status"] == "localized"
    assert len((tmp_path / "r.txt").read_text().splitlines()) == 2


def test_console_script_prints_no_traceback(tmp_path):
    exe = shutil.which("global-loc") or str((sys.executable.rsplit("/", 1)[0]) + "/global-loc")
    out = subprocess.run([exe, "localize", "--map", str(tmp_path / "none.glmap"), "--images",
                          str(tmp_path), "--queries", str(tmp_path / "q.txt"), "--out",
                          str(tmp_path / "r.txt")], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: ")


def test_evaluate_counts_failures_from_the_log(tmp_path, capsys, temple_split):
    gt_lines = temple_split["gt"].read_text().splitlines()
    (tmp_path / "r.txt").write_text(gt_lines[0] + "\n")
    cov = np.diag([1e-6] * 3 + [1e-4] * 3).tolist()  # as the localizer logs it
    log = {"queries": [{"name": gt_lines[0].split()[0], "status": "localized", "covariance": cov},
                       {"name": gt_lines[2].split()[0], "status": "not_localized", "reason": "7 inliers"}]}
    (tmp_path / "r_log.json").write_text(json.dumps(log))
    rc, out, _ = run(capsys, "evaluate", "--results", str(tmp_path / "r.txt"), "--gt",
                     str(temple_split["gt"]), "--json", str(tmp_path / "e.json"))
    assert rc == 0
    assert "recall @ (0.25 m, 2 deg): 50.0 %" in out
    assert "7 inliers" in out
    rep = json.loads((tmp_path / "e.json").read_text())
    assert rep["num_queries"] == 2 and rep["num_localized"] == 1
    # the logged covariance gives the consistency table (the estimate is the ground truth here)
    assert "covariance consistency (1 localized queries" in out and "| 2 sigma | 95.5 % | 100.0 % |" in out
    assert rep["consistency"]["count"] == 1 and rep["consistency"]["max_distance"] == 0.0
    log["queries"][0]["covariance"] = [[1.0, 2.0]]  # a log from another tool
    (tmp_path / "r_log.json").write_text(json.dumps(log))
    rc, _, err = run(capsys, "evaluate", "--results", str(tmp_path / "r.txt"), "--gt", str(temple_split["gt"]))
    assert rc == 2 and "is not 6x6 finite numbers" in err and gt_lines[0].split()[0] in err
    rc, _, err = run(capsys, "evaluate", "--results", str(tmp_path / "r.txt"), "--gt",
                     str(temple_split["gt"]), "--thresholds", "0.25")
    assert rc == 2 and "must be 'metres,degrees'" in err


@pytest.mark.slow
def test_index_from_colmap_model(maupertuis_dir, tmp_path, capsys):
    out = tmp_path / "maup.glmap"
    rc, stdout, err = run(capsys, "index", "--colmap", str(maupertuis_dir / "reconstruction"),
                          "--images", str(maupertuis_dir / "images"), "--out", str(out))
    assert rc == 0, err
    assert "4 keyframes" in stdout and out.exists()
    rc, _, err = run(capsys, "index", "--colmap", str(maupertuis_dir / "reconstruction"),
                     "--out", str(out))
    assert rc == 2 and "--colmap needs --images" in err
    rc, _, err = run(capsys, "index", "--colmap", str(tmp_path), "--images", str(tmp_path),
                     "--out", str(out))
    assert rc == 2 and "is not a COLMAP model" in err


@pytest.mark.slow
def test_time_query_reports_every_stage(temple_map, temple_split, tmp_path, capsys):
    rc, out, _ = run(capsys, "time-query", "--map", str(temple_map), "--images", str(temple_split["images"]),
                     "--queries", str(temple_split["queries"]), "--max-num-queries", "3", "--warmup", "1",
                     "--json", str(tmp_path / "t.json"))
    assert rc == 0
    for text in ("python:", "pycolmap:", "faiss:", "device:", "| local_features |", "| matching |", "| pnp |",
                 "| refinement |", "| total |", "peak memory: host"):
        assert text in out, text
    assert out.count("| refinement |") == 1 and out.count("| total |") == 1  # each stage once
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["timed"] == 3 and report["localized"] == 3
    assert report["stages"]["total"]["median_ms"] > report["stages"]["pnp"]["median_ms"] > 0


@pytest.mark.slow
def test_sigterm_stops_index_like_ctrl_c_with_no_orphan_and_no_partial_map(temple_dir, tmp_path):
    """``kill PID`` (SIGTERM, what a supervisor sends) while workers extract features: one line,
    exit 143, no worker left, no map file (nor a temporary one)."""
    import signal
    import time

    import psutil

    exe = str(Path(sys.executable).parent / "global-loc")
    out = tmp_path / "m.glmap"
    proc = subprocess.Popen([exe, "index", "--images", str(temple_dir / "images"), "--poses",
                             str(temple_dir / "poses_cam_from_world.txt"), "--cameras", str(temple_dir / "cameras.txt"),
                             "--out", str(out), "--workers", "2", "--set", "features.max_keypoints=8000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(me.children(recursive=True)) < 3:  # forkserver + 2 workers
        time.sleep(0.05)
    children = me.children(recursive=True)
    assert len(children) >= 3, "the workers never started"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr and "*** SIGTERM" not in stderr, stderr[-2000:]
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"orphaned: {alive}"
    assert list(tmp_path.iterdir()) == []


def test_every_missing_optional_package_is_one_line_with_the_install_command(temple_dir, tmp_path):
    """torch (learned presets), kapture and ray made unimportable: each command prints one
    line that names the package and how to install it, and exits 2."""
    T = temple_dir
    folder = ["--images", str(T / "images"), "--poses", str(T / "poses_cam_from_world.txt"), "--cameras",
              str(T / "cameras.txt"), "--out", str(tmp_path / "m.glmap")]
    cases = {
        "torch": [["index", *folder, "--preset", p] for p in ("aliked-n16", "r2d2", "hfnet", "superpoint-netvlad")],
        "kapture": [["index", "--kapture", str(tmp_path), "--out", str(tmp_path / "k.glmap")]],
        "ray": [["index", *folder, "--ray"]],
    }
    script = ("import sys, json\nsys.modules[sys.argv[1]] = None\nfrom global_loc.cli.main import main\n"
              "sys.exit(main(json.loads(sys.argv[2])))\n")
    for package, commands in cases.items():
        for argv in commands:
            out = subprocess.run([sys.executable, "-c", script, package, json.dumps(["-q", *argv])],
                                 capture_output=True, text=True, timeout=120)
            lines = out.stderr.strip().splitlines()
            assert out.returncode == 2 and len(lines) == 1, f"{package}, {argv}: {out.stderr[-3000:]}"
            assert package in lines[0] and "pip install" in lines[0] and "Traceback" not in out.stderr, lines[0]


def test_an_unreadable_listed_image_is_skipped_with_a_warning_and_counted(temple_dir, tmp_path, capsys):
    """One rule for images that exist but cannot be read, whether not an image at all or a
    truncated file: skipped with a warning, the others indexed, a count at the end."""
    images = tmp_path / "images"
    images.mkdir()
    names = sorted(p.name for p in (temple_dir / "images").iterdir())[:8]
    for n in names:
        shutil.copy(temple_dir / "images" / n, images / n)
    (images / names[2]).write_text("not an image\n")  # listed, but a text file
    data = (images / names[5]).read_bytes()
    (images / names[5]).write_bytes(data[: len(data) // 3])  # truncated
    poses = [l for l in (temple_dir / "poses_cam_from_world.txt").read_text().splitlines() if l.split()[0] in names]
    cams = [l for l in (temple_dir / "cameras.txt").read_text().splitlines() if l.split()[0] in names]
    (tmp_path / "p.txt").write_text("\n".join(poses) + "\n")
    (tmp_path / "c.txt").write_text("\n".join(cams) + "\n")
    rc = main(["index", "--images", str(images), "--poses", str(tmp_path / "p.txt"), "--cameras",
               str(tmp_path / "c.txt"), "--out", str(tmp_path / "m.glmap")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "skipped 2 frame(s)" in out and names[2] in out and names[5] in out, out
    from global_loc.map.storage import read_map

    assert read_map(tmp_path / "m.glmap").num_keyframes == 6


def test_evaluate_plot_of_image_folder_results_writes_a_png(temple_split, tmp_path, capsys):
    gt = temple_split["gt"]
    lines = gt.read_text().splitlines()[:10]
    (tmp_path / "r.txt").write_text("\n".join(lines) + "\n")
    plot = tmp_path / "p.png"
    assert main(["evaluate", "--results", str(tmp_path / "r.txt"), "--gt", str(gt), "--plot", str(plot)]) == 0
    assert f"plot: {plot}" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_reader_that_leaves_the_pipe_early_gets_no_traceback(temple_split, tmp_path):
    """``global-loc evaluate ... | head -1``: the reader closes the pipe; the command ends
    quietly with status 141 (SIGPIPE's), not a BrokenPipeError traceback."""
    gt = temple_split["gt"]
    exe = str(Path(sys.executable).parent / "global-loc")
    proc = subprocess.Popen([exe, "evaluate", "--results", str(gt), "--gt", str(gt)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before the command has printed anything
    err = proc.stderr.read()
    assert proc.wait(60) == 141 and "Traceback" not in err and "BrokenPipeError" not in err, err
