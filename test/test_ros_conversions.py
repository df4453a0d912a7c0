"""Message conversions, tested with the rosbags library's message classes (ROS 2 and ROS 1)."""
import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from global_loc.errors import CameraModelError, ImageReadError, InputError
from global_loc.geometry.camera import Camera
from global_loc.geometry.transforms import Pose
from global_loc.ros import conversions as conv

STORES = {"ros2": get_typestore(Stores.ROS2_HUMBLE), "ros1": get_typestore(Stores.ROS1_NOETIC)}


@pytest.fixture(params=["ros2", "ros1"])
def types(request):
    return conv.rosbags_types(STORES[request.param])


CAMERAS = [
    Camera("PINHOLE", 640, 480, [500, 502, 320.5, 240.5]),
    Camera("OPENCV", 640, 480, [500, 502, 320.5, 240.5, -0.1, 0.02, 0.001, -0.002]),
    Camera("FULL_OPENCV", 640, 480, [500, 502, 320.5, 240.5, -0.1, 0.02, 0.001, -0.002, 0.01, 0.001, 0.0, 0.002]),
    Camera("OPENCV_FISHEYE", 848, 800, [285.7, 285.9, 424.3, 400.1, -0.006, 0.04, -0.037, 0.006]),
]


@pytest.mark.parametrize("camera", CAMERAS, ids=lambda c: c.model)
def test_camera_info_round_trip(types, camera):
    msg = conv.make_camera_info(types, camera, "cam", 12.5)
    assert msg.header.frame_id == "cam"
    k = np.asarray(conv.field(msg, "k")).reshape(3, 3)
    assert k[0, 2] == pytest.approx(camera.params[2] - 0.5)  # OpenCV convention in ROS
    back = conv.camera_from_camera_info(msg)
    assert back.model == camera.model
    assert np.allclose(back.params, camera.params)


def test_camera_info_models_and_errors():
    T = conv.rosbags_types(STORES["ros2"])
    info = conv.make_camera_info(T, Camera("SIMPLE_RADIAL", 640, 480, [500, 320, 240, -0.1]), "c", 0)
    assert info.distortion_model == "plumb_bob"
    cam = conv.camera_from_camera_info(info)
    assert cam.model == "OPENCV" and np.allclose(cam.params, [500, 500, 320, 240, -0.1, 0, 0, 0])
    info.distortion_model = "kannala_brandt"
    with pytest.raises(CameraModelError, match="unknown camera_info distortion model 'kannala_brandt'"):
        conv.camera_from_camera_info(info)
    info.distortion_model = "equidistant"
    with pytest.raises(CameraModelError, match="'equidistant' with 5 coefficients"):
        conv.camera_from_camera_info(info)
    info.distortion_model = "plumb_bob"
    info.k = np.zeros(9)
    with pytest.raises(InputError, match="no calibration"):
        conv.camera_from_camera_info(info)


def test_camera_info_binning_and_roi():
    T = conv.rosbags_types(STORES["ros2"])
    full = Camera("PINHOLE", 1280, 960, [1000, 1000, 640, 480])
    info = conv.make_camera_info(T, full, "c", 0)
    info.binning_x = info.binning_y = 2
    half = conv.camera_from_camera_info(info)
    assert (half.width, half.height) == (640, 480)
    assert np.allclose(half.params, [500, 500, 320, 240])
    # a pixel's ray is the same in the full and in the binned image
    X = np.array([[0.3, -0.2, 2.0]])
    u_full = full.project(X)[0]
    u_half = half.project(X)[0]
    assert np.allclose(u_full, 2 * u_half + 0.5)  # binned pixel centre, OpenCV convention
    info.binning_x = info.binning_y = 0
    info.roi = conv.new(T, "sensor_msgs/msg/RegionOfInterest", x_offset=100, y_offset=50, height=400,
                        width=600, do_rectify=False)
    crop = conv.camera_from_camera_info(info)
    assert (crop.width, crop.height) == (600, 400)
    assert np.allclose(full.project(X)[0] - [100, 50], crop.project(X)[0])


def rgb_image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    return img


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_raw_image_encodings(encoding):
    T = conv.rosbags_types(STORES["ros2"])
    rgb = rgb_image()
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    data = {
        "rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.dstack([rgb, np.full(grey.shape, 255, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.full(grey.shape, 255, np.uint8)]),
        "mono8": grey, "mono16": grey.astype(np.uint16) * 257,
    }[encoding]
    raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    msg = conv.new(T, "sensor_msgs/msg/Image", header=conv.make_header(T, "c", 0), height=24, width=32,
                   encoding=encoding, is_bigendian=0, step=raw.size // 24, data=raw)
    out = conv.image_from_msg(msg)
    if encoding.startswith("mono"):
        assert out.shape == (24, 32) and np.abs(out.astype(int) - grey).max() <= 1
    else:
        assert out.shape == (24, 32, 3) and np.array_equal(out, rgb)


def test_bayer_and_row_padding():
    T = conv.rosbags_types(STORES["ros2"])
    rgb = np.full((24, 32, 3), (200, 100, 50), np.uint8)
    bayer = np.zeros((24, 32), np.uint8)  # RGGB mosaic of a flat colour
    bayer[0::2, 0::2] = 200
    bayer[0::2, 1::2] = 100
    bayer[1::2, 0::2] = 100
    bayer[1::2, 1::2] = 50
    msg = conv.new(T, "sensor_msgs/msg/Image", header=conv.make_header(T, "c", 0), height=24, width=32,
                   encoding="bayer_rggb8", is_bigendian=0, step=32, data=bayer.reshape(-1))
    out = conv.image_from_msg(msg)
    assert out.shape == (24, 32, 3)
    assert np.abs(out[4:-4, 4:-4].astype(int) - rgb[4:-4, 4:-4]).max() <= 2
    # rows padded to 40 bytes
    padded = np.zeros((24, 40), np.uint8)
    padded[:, :32] = bayer
    msg.step, msg.data, msg.encoding = 40, padded.reshape(-1), "mono8"
    assert np.array_equal(conv.image_from_msg(msg), bayer)


def test_image_errors_name_the_cause():
    T = conv.rosbags_types(STORES["ros2"])
    msg = conv.new(T, "sensor_msgs/msg/Image", header=conv.make_header(T, "c", 0), height=24, width=32,
                   encoding="weird42", is_bigendian=0, step=32, data=np.zeros(24 * 32, np.uint8))
    with pytest.raises(ImageReadError, match="unknown image encoding 'weird42'"):
        conv.image_from_msg(msg)
    msg.encoding, msg.data = "rgb8", np.zeros(100, np.uint8)
    msg.step = 96
    with pytest.raises(ImageReadError, match="holds 100 bytes"):
        conv.image_from_msg(msg)
    bad = conv.new(T, "sensor_msgs/msg/CompressedImage", header=conv.make_header(T, "c", 0),
                   format="jpeg", data=np.frombuffer(b"\xff\xd8\xff garbage", np.uint8))
    with pytest.raises(ImageReadError, match="format 'jpeg'.*cannot be decoded"):
        conv.image_from_msg(bad)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_grey_and_colour_by_channel_count(types, fmt):
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (220, 30, 30)  # red, then blue: the channel order must survive
    rgb[:, 32:] = (30, 30, 220)
    colour = conv.image_from_msg(conv.make_compressed_image(types, rgb, "c", 0, fmt))
    assert colour.shape == (48, 64, 3)
    assert np.abs(colour.astype(int) - rgb).mean() < (3 if fmt == "jpeg" else 0.01)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = conv.image_from_msg(conv.make_compressed_image(types, grey, "c", 0, fmt))
    assert out.shape == (48, 64)


def test_pose_and_transform_messages(types):
    p = Pose.from_qt([0.8, 0.1, -0.5, 0.3], [1.0, -2.0, 3.0])
    assert np.allclose(conv.pose_from_msg(conv.make_pose(types, p)).matrix(), p.matrix())
    ts = conv.make_transform_stamped(types, "map", "odom", 1.25, p)
    assert ts.header.frame_id == "map" and ts.child_frame_id == "odom"
    assert conv.stamp_to_sec(ts.header.stamp) == pytest.approx(1.25)
    assert np.allclose(conv.transform_from_msg(ts.transform).matrix(), p.matrix())
    cov = np.diag([1.0, 2, 3, 4, 5, 6])
    cov[0, 5] = cov[5, 0] = 0.5
    msg = conv.make_pose_with_covariance_stamped(types, "map", 2.0, p, cov)
    assert np.allclose(np.asarray(msg.pose.covariance).reshape(6, 6), cov)
    assert conv.stamp_to_ns(msg.header.stamp) == 2_000_000_000


def test_builder_names_missing_fields():
    T = conv.rosbags_types(STORES["ros2"])
    with pytest.raises(InputError, match="no value for field"):
        conv.new(T, "geometry_msgs/msg/Point", x=1.0)


def test_diagnostic_array(types):
    msg = conv.make_diagnostic_array(types, 3.5, "localizer: localization", "global_loc", "WARN",
                                     "not localized for 10 frames", {"rate_hz": 4.8, "median_inliers": 120})
    status = msg.status[0]
    assert status.name == "localizer: localization" and status.hardware_id == "global_loc"
    assert int(status.level) == 1 and status.message == "not localized for 10 frames"
    assert [(kv.key, kv.value) for kv in status.values] == [("rate_hz", "4.8"), ("median_inliers", "120")]
    assert conv.stamp_to_sec(msg.header.stamp) == 3.5
