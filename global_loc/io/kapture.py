"""kapture data sets in and out, through NAVER LABS' ``kapture`` library (never our own parser).

kapture (https://github.com/naver/kapture) is the pivot format of the visual localization
benchmarks and of kapture-localization's and R2D2's pipelines. A data set is a folder with
``sensors/sensors.txt`` (cameras: COLMAP's models and parameters), optionally ``rigs.txt``
(``sensor_from_rig``), ``trajectories.txt`` (``device_from_world`` per timestamp, for cameras
or rigs) and ``records_camera.txt`` (timestamp, camera -> image path under
``sensors/records_data``). Its conventions are COLMAP's, so they map onto ours as they are:
a trajectory pose is our ``cam_from_world``, a camera model and its parameters are a
:class:`~global_loc.geometry.camera.Camera`. Rig poses are turned into per-camera poses by the
library (``kapture.rigs_remove``).

Install with ``pip install 'global_loc[kapture]'``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..geometry.camera import Camera
from ..geometry.transforms import Pose


def _kapture():
    try:
        import kapture
        import kapture.io.csv  # noqa: F401
        import kapture.io.records  # noqa: F401
    except ImportError as e:  # pragma: no cover - the extra is part of the test setup
        raise InputError(f"kapture data needs the kapture library ({e}): pip install 'global_loc[kapture]'") from None
    return kapture


@dataclass
class KaptureImage:
    """One camera record of a kapture data set.

    Attributes:
        name: the image path relative to ``sensors/records_data`` (kapture's record).
        timestamp: kapture timestamp (an integer, in the data set's unit).
        sensor_id: the camera's sensor id.
        camera: the camera model.
        cam_from_world: the pose from the trajectories (rigs composed), or None.
    """

    name: str
    timestamp: int
    sensor_id: str
    camera: Camera
    cam_from_world: Pose | None


@dataclass
class KaptureSet:
    """Attributes:
    root: the kapture folder.
    images_dir: its ``sensors/records_data`` folder (image names are relative to it).
    images: the camera records, in timestamp then sensor order.
    """

    root: Path
    images_dir: Path
    images: list[KaptureImage]

    def poses(self) -> dict[str, Pose]:
        """Image name -> ``cam_from_world``, for the records with a pose."""
        return {i.name: i.cam_from_world for i in self.images if i.cam_from_world is not None}

    def cameras(self) -> dict[str, Camera]:
        """Image name -> camera, for every record."""
        return {i.name: i.camera for i in self.images}


def _camera(sensor_id: str, sensor) -> Camera:
    kapture = _kapture()
    if not isinstance(sensor, kapture.Camera):
        raise InputError(f"sensor {sensor_id!r} is not a camera")
    model = sensor.camera_type.name
    params = [float(v) for v in sensor.camera_params]
    try:
        return Camera(model, int(params[0]), int(params[1]), params[2:])
    except Exception as e:  # an unknown model or wrong parameter count
        raise InputError(f"camera {sensor_id!r}: kapture model {model} cannot be used ({e}); the usable ones "
                         "are COLMAP's (SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, "
                         "OPENCV_FISHEYE, FULL_OPENCV, ...)") from None


def read_kapture(path: str | os.PathLike) -> KaptureSet:
    """The camera records of a kapture data set, with their cameras and poses.

    Args:
        path: the kapture folder (with ``sensors/sensors.txt``).
    Returns:
        A :class:`KaptureSet`.
    Raises:
        InputError: no such data set, no camera record, a record of an unknown sensor, or a
            camera model we cannot use (UNKNOWN_CAMERA).
    """
    kapture = _kapture()
    from kapture.io.csv import kapture_from_dir
    from kapture.io.records import get_image_fullpath

    root = Path(path)
    if not (root / "sensors" / "sensors.txt").is_file():
        raise InputError(f"{root} is not a kapture data set: {root / 'sensors' / 'sensors.txt'} is missing")
    skip = [kapture.Keypoints, kapture.Descriptors, kapture.GlobalFeatures, kapture.Matches,
            kapture.Points3d, kapture.Observations, kapture.RecordsDepth, kapture.RecordsLidar,
            kapture.RecordsWifi, kapture.RecordsBluetooth, kapture.RecordsGnss,
            kapture.RecordsAccelerometer, kapture.RecordsGyroscope, kapture.RecordsMagnetic]
    try:
        data = kapture_from_dir(str(root), skip_list=skip)
    except Exception as e:  # the library's own parse errors
        raise InputError(f"{root}: kapture could not read it ({type(e).__name__}: {e})") from None
    if not data.records_camera:
        raise InputError(f"{root}: no camera record (sensors/records_camera.txt is missing or empty)")
    trajectories = data.trajectories
    if trajectories is not None and data.rigs:
        trajectories = kapture.rigs_remove(trajectories, data.rigs)
    cameras: dict[str, Camera] = {}
    images = []
    for timestamp, sensor_id, name in kapture.flatten(data.records_camera, is_sorted=True):
        if sensor_id not in data.sensors:
            raise InputError(f"{root}: record {name} names sensor {sensor_id!r}, which sensors.txt lacks")
        if sensor_id not in cameras:
            cameras[sensor_id] = _camera(sensor_id, data.sensors[sensor_id])
        pose = None
        if trajectories is not None and (timestamp, sensor_id) in trajectories:
            p = trajectories[timestamp, sensor_id]
            pose = Pose.from_qt(p.r_raw, p.t_raw)
        images.append(KaptureImage(name, int(timestamp), sensor_id, cameras[sensor_id], pose))
    return KaptureSet(root, Path(get_image_fullpath(str(root))), images)


def write_kapture_results(path: str | os.PathLike, queries: KaptureSet, poses: dict[str, Pose]) -> Path:
    """Localized queries as a kapture data set: the queries' sensors and camera records, and a
    trajectory (``cam_from_world``) for each localized one; the images are not copied.

    Args:
        path: the folder to write (created).
        queries: the query set that was localized.
        poses: image name -> estimated ``cam_from_world``.
    Returns:
        ``path``.
    """
    kapture = _kapture()
    from kapture.io.csv import kapture_to_dir

    sensors, records, trajectories = kapture.Sensors(), kapture.RecordsCamera(), kapture.Trajectories()
    for im in queries.images:
        if im.sensor_id not in sensors:
            cam = im.camera
            sensors[im.sensor_id] = kapture.Camera(cam.model, [cam.width, cam.height, *map(float, cam.params)])
        records[im.timestamp, im.sensor_id] = im.name
        if im.name in poses:
            p = poses[im.name]
            trajectories[im.timestamp, im.sensor_id] = kapture.PoseTransform(p.q_wxyz.tolist(), p.t.tolist())
    out = Path(path)
    kapture_to_dir(str(out), kapture.Kapture(sensors=sensors, records_camera=records, trajectories=trajectories))
    return out
