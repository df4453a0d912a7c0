import cv2
import numpy as np
import pytest

from global_loc.errors import CameraModelError, ImageReadError, InputError
from global_loc.geometry.camera import Camera
from global_loc.geometry.transforms import Pose
from global_loc.io.images import check_image_camera, image_size, read_image
from global_loc.io.text import read_cameras, read_poses, read_tum, write_cameras, write_poses, write_tum


def test_pose_list_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    poses = {}
    for i in range(5):
        q = rng.normal(size=4)
        poses[f"img{i}.png"] = Pose.from_qt(q / np.linalg.norm(q), rng.normal(size=3))
    write_poses(tmp_path / "p.txt", poses)
    back = read_poses(tmp_path / "p.txt")
    assert list(back) == list(poses)
    for k in poses:
        assert np.allclose(back[k].matrix(), poses[k].matrix(), atol=1e-12)


def test_pose_list_errors_name_file_and_line(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("# comment\na.png 1 0 0 0 0 0 0\nb.png 1 0 0\n")
    with pytest.raises(InputError, match=r"p.txt:3: expected 'name qw qx qy qz tx ty tz' \(8 fields\), got 4"):
        read_poses(p)
    p.write_text("a.png 1 0 0 x 0 0 0\n")
    with pytest.raises(InputError, match="p.txt:1: .*must be numbers"):
        read_poses(p)
    p.write_text("a.png 1 0 0 0 0 0 0\na.png 1 0 0 0 0 0 0\n")
    with pytest.raises(InputError, match="listed twice"):
        read_poses(p)
    with pytest.raises(InputError, match="does not exist"):
        read_poses(tmp_path / "nope.txt")


def test_camera_list_round_trip_and_errors(tmp_path):
    cams = {"a.png": Camera("PINHOLE", 640, 480, [500, 501, 320, 240]),
            "b.png": Camera("OPENCV_FISHEYE", 848, 800, [285, 286, 420, 400, 0.1, -0.05, 0.01, 0.0])}
    write_cameras(tmp_path / "c.txt", cams)
    assert read_cameras(tmp_path / "c.txt") == cams
    bad = tmp_path / "bad.txt"
    bad.write_text("a.png KANNALA 640 480 1 2 3 4\n")
    with pytest.raises(CameraModelError, match="bad.txt:1: unknown camera model 'KANNALA'"):
        read_cameras(bad)
    bad.write_text("a.png PINHOLE 640 480 1 2 3\n")
    with pytest.raises(CameraModelError, match="takes 4 parameters"):
        read_cameras(bad)


def test_tum_round_trip(tmp_path):
    traj = [(1.5, Pose.from_qt([0.9, 0.1, 0.2, 0.3], [1, 2, 3])), (2.25, Pose.identity())]
    write_tum(tmp_path / "t.tum", traj)
    line = (tmp_path / "t.tum").read_text().splitlines()[1]
    assert line.split()[4:] == ["0.0", "0.0", "0.0", "1.0"]  # qx qy qz qw
    back = read_tum(tmp_path / "t.tum")
    assert [s for s, _ in back] == [1.5, 2.25]
    assert np.allclose(back[0][1].matrix(), traj[0][1].matrix())


def test_read_image_variants_and_errors(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])
    img = read_image(tmp_path / "c.png")
    assert img.shape == (20, 30, 3) and img[0, 0, 0] == 200 and img[0, 0, 2] == 0
    assert read_image(tmp_path / "c.png", grayscale=True).shape == (20, 30)
    cv2.imwrite(str(tmp_path / "g16.png"), np.full((20, 30), 65535, np.uint16))
    g = read_image(tmp_path / "g16.png")
    assert g.dtype == np.uint8 and g.shape == (20, 30, 3) and g.max() == 255
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ImageReadError, match="corrupt.png cannot be decoded"):
        read_image(tmp_path / "corrupt.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    assert image_size(tmp_path / "c.png") == (30, 20)
    with pytest.raises(ImageReadError, match="30x20 but its camera is 640x480"):
        check_image_camera(tmp_path / "c.png", Camera("PINHOLE", 640, 480, [1, 1, 1, 1]))
