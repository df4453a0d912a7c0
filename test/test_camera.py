import numpy as np
import pycolmap
import pytest

from global_loc.errors import CameraModelError
from global_loc.geometry.camera import CAMERA_MODELS, COLMAP_PIXEL_OFFSET, Camera

PARAMS = {
    "SIMPLE_PINHOLE": [500, 320, 240],
    "PINHOLE": [500, 510, 320, 240],
    "SIMPLE_RADIAL": [500, 320, 240, -0.05],
    "RADIAL": [500, 320, 240, -0.05, 0.01],
    "OPENCV": [500, 510, 320, 240, -0.05, 0.01, 0.001, -0.001],
    "OPENCV_FISHEYE": [300, 300, 320, 240, 0.05, -0.01, 0.002, -0.001],
    "FULL_OPENCV": [500, 510, 320, 240, -0.05, 0.01, 0.001, -0.001, 0.001, 0.0, 0.0, 0.0],
}


@pytest.mark.parametrize("model", list(CAMERA_MODELS))
def test_project_and_rays_round_trip(model):
    cam = Camera(model, 640, 480, PARAMS[model])
    rng = np.random.default_rng(0)
    px = rng.uniform([20, 20], [620, 460], size=(200, 2))
    rays = cam.rays(px)
    assert rays.shape == (200, 3)
    assert np.allclose(np.linalg.norm(rays, axis=1), 1.0)
    back = cam.project(rays * rng.uniform(0.5, 10, size=(200, 1)))
    assert np.abs(back - px).max() < 1e-6


def test_pixel_convention_is_opencv():
    """The principal point (COLMAP convention) projects to cx - 0.5 in OpenCV's convention."""
    cam = Camera("PINHOLE", 640, 480, [500, 500, 320, 240])
    assert np.allclose(cam.project([[0, 0, 1.0]]), [[319.5, 239.5]])
    assert np.allclose(cam.K[:2, 2], [319.5, 239.5])
    colmap_uv = cam.to_pycolmap().img_from_cam(np.array([[0.1, -0.2, 1.0]]))
    assert np.allclose(cam.project([[0.1, -0.2, 1.0]]), colmap_uv - COLMAP_PIXEL_OFFSET)


def test_points_behind_camera_are_nan():
    cam = Camera("PINHOLE", 640, 480, [500, 500, 320, 240])
    out = cam.project([[0, 0, -1.0], [0, 0, 1.0]])
    assert np.all(np.isnan(out[0])) and np.all(np.isfinite(out[1]))


@pytest.mark.parametrize(
    "model,params,match",
    [
        ("PINHOLE_XYZ", [1, 2, 3, 4], "unknown camera model 'PINHOLE_XYZ'"),
        ("PINHOLE", [1, 2, 3], "takes 4 parameters"),
        ("PINHOLE", [-1, 500, 3, 4], "focal length must be positive"),
        ("OPENCV", [500] * 9, "takes 8 parameters"),
    ],
)
def test_bad_camera_errors_name_the_cause(model, params, match):
    with pytest.raises(CameraModelError, match=match):
        Camera(model, 640, 480, params)


def test_size_must_be_positive():
    with pytest.raises(CameraModelError, match="size"):
        Camera("PINHOLE", 0, 480, [1, 1, 1, 1])


def test_scaled_camera_matches_resized_image():
    cam = Camera("PINHOLE", 640, 480, [500, 500, 320, 240])
    half = cam.scaled(0.5)
    assert (half.width, half.height) == (320, 240)
    assert np.allclose(half.params, [250, 250, 160, 120])


def test_equality_and_pycolmap_round_trip():
    cam = Camera("opencv", 640, 480, PARAMS["OPENCV"])
    assert cam.model == "OPENCV"
    assert Camera.from_pycolmap(cam.to_pycolmap()) == cam
    assert cam != Camera("OPENCV", 640, 481, PARAMS["OPENCV"])
    assert isinstance(cam.to_pycolmap(), pycolmap.Camera)


@pytest.mark.parametrize("model,params", [
    ("PINHOLE", [500.0, 480.0, 320.0, 240.0]),
    ("OPENCV", [500.0, 480.0, 320.0, 240.0, 0.1, -0.05, 0.001, 0.002]),
    ("OPENCV_FISHEYE", [300.0, 300.0, 320.0, 240.0, 0.05, 0.01, -0.01, 0.002]),
])
def test_projection_jacobian_matches_central_differences(model, params):
    cam = Camera(model, 640, 480, params)
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(-0.5, 0.5, (20, 2)), rng.uniform(1.0, 3.0, 20)])
    J = cam.projection_jacobian(X)
    h = 1e-5
    num = np.stack([(cam.project(X + h * e) - cam.project(X - h * e)) / (2 * h) for e in np.eye(3)], axis=2)
    np.testing.assert_allclose(J, num, rtol=1e-4, atol=1e-3)
