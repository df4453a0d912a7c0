"""Maps from photos alone: structure from motion with pycolmap (COLMAP), never our own.

A user with photos and no poses (hloc's path, Sarlin et al., CVPR 2019; COLMAP, Schönberger
and Frahm, CVPR 2016) gets a map in two steps: COLMAP's incremental mapping on the photos gives
poses, cameras and 3D points (:func:`reconstruct`), and the map is indexed from that
reconstruction as from any COLMAP model (:func:`global_loc.pipeline.index_colmap_model`),
with the preset's own local features and global descriptors.

The reconstruction uses COLMAP's SIFT and exhaustive matching (pycolmap does not take the
preset's features for its matcher; its SIFT is what COLMAP is tuned for). Cameras come from
each photo's EXIF (make, model, focal length) where it has one, else COLMAP's guess (focal
1.2 x the larger image side), refined by bundle adjustment; photos of one size and EXIF camera
share intrinsics (COLMAP's ``CameraMode.AUTO``). Given cameras (``--cameras``) are kept fixed.

Poses from structure from motion have an unknown scale and frame: the map is in COLMAP's
frame, and distances in it are not metres.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

logger = logging.getLogger("global_loc")

#: the files a photo folder is searched for (what OpenCV and COLMAP both read)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")

#: fewer registered photos than this make no map: an error that names the photos
MIN_REGISTERED = 3


class SfMError(InputError):
    """Structure from motion registered too few photos (the message says how many and which)."""


@dataclass
class SfMResult:
    """What :func:`reconstruct` made.

    Attributes:
        model_dir: the COLMAP model (binary) of the largest reconstruction.
        registered: names of the photos with a pose in it, sorted.
        unregistered: names of the other photos, sorted.
        num_points: its 3D points.
        seconds: ``{"extraction": s, "matching": s, "mapping": s}``, wall time.
        cameras: ``name -> Camera`` of the registered photos (refined intrinsics).
    """

    model_dir: Path
    registered: list[str]
    unregistered: list[str]
    num_points: int
    seconds: dict[str, float] = field(default_factory=dict)
    cameras: dict = field(default_factory=dict)

    def summary(self) -> str:
        took = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return (f"structure from motion: {len(self.registered)} of {len(self.registered) + len(self.unregistered)} "
                f"photos registered, {self.num_points} 3D points ({took})")


def list_images(images: str | os.PathLike) -> list[str]:
    """The image files of a folder (recursively), as names relative to it, sorted.

    Raises:
        InputError: the folder does not exist or holds no image.
    """
    images = Path(images)
    if not images.is_dir():
        raise InputError(f"image folder {images} does not exist")
    names = sorted(str(p.relative_to(images)) for p in images.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise InputError(f"{images} holds no image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return names


def reconstruct(images: str | os.PathLike, out_dir: str | os.PathLike, names: list[str] | None = None,
                cameras: dict | None = None, seed: int = 0, single_camera: bool = False) -> SfMResult:
    """Poses, cameras and 3D points of photos by COLMAP's incremental structure from motion.

    Args:
        images: the photo folder.
        out_dir: a working folder (made; an old ``database.db`` there is replaced): the COLMAP
            database and ``model/``, the reconstruction, stay there for inspection.
        names: the photos (relative to ``images``); default: every image in the folder.
        cameras: ``name -> Camera`` to use and keep fixed instead of EXIF (every name given).
        single_camera: every photo was taken by one camera at one zoom: one set of intrinsics for
            all (COLMAP's ``CameraMode.SINGLE``); otherwise photos of one size share intrinsics
            only where their EXIF says they are of one camera.
        seed: COLMAP's random seed (its threads may still make a few points differ between runs).

    Returns:
        The largest reconstruction.

    Raises:
        InputError: no photos, a photo missing, or cameras for only some photos.
        SfMError: fewer than :data:`MIN_REGISTERED` photos registered (the message lists them).
    """
    import pycolmap

    images = Path(images)
    names = list_images(images) if names is None else list(names)
    missing = [n for n in names if not (images / n).is_file()]
    if missing:
        raise InputError(f"{len(missing)} photo(s) not in {images}: {', '.join(missing[:5])}")
    if len(names) < MIN_REGISTERED:
        raise SfMError(f"structure from motion needs at least {MIN_REGISTERED} photos of the place, got "
                       f"{len(names)}; or give their poses with --poses and --cameras")
    if cameras is not None:
        without = [n for n in names if n not in cameras]
        if without:
            raise InputError(f"--cameras has no line for {len(without)} photo(s): {', '.join(without[:5])}; "
                             "give every photo's camera, or none (then EXIF and bundle adjustment decide)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # COLMAP's own log (glog) only for -v: its INFO lines are hundreds per photo
    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if logger.isEnabledFor(logging.DEBUG) else 2
    try:
        return _reconstruct(images, out_dir, names, cameras, seed, single_camera)
    finally:
        pycolmap.logging.minloglevel = level


def _reconstruct(images: Path, out_dir: Path, names: list[str], cameras, seed: int, single_camera: bool) -> SfMResult:
    import pycolmap

    from ..geometry.camera import Camera

    database = out_dir / "database.db"
    if database.exists():
        database.unlink()
    seconds = {}
    t = time.perf_counter()
    reader = pycolmap.ImageReaderOptions()
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = os.cpu_count() or 1
    logger.info("structure from motion on %d photos: extracting SIFT (COLMAP)", len(names))
    mode = (pycolmap.CameraMode.PER_IMAGE if cameras is not None else
            pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.AUTO)
    pycolmap.extract_features(database, images, image_names=names, camera_mode=mode, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    if cameras is not None:
        _set_cameras(database, cameras)
    seconds["extraction"] = time.perf_counter() - t
    t = time.perf_counter()
    logger.info("matching %d pairs (exhaustive)", len(names) * (len(names) - 1) // 2)
    pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
    seconds["matching"] = time.perf_counter() - t
    t = time.perf_counter()
    options = pycolmap.IncrementalPipelineOptions()
    options.random_seed = int(seed)
    if cameras is not None:
        options.ba_refine_focal_length = False
        options.ba_refine_principal_point = False
        options.ba_refine_extra_params = False
    sparse = out_dir / "sparse"
    if sparse.exists():
        shutil.rmtree(sparse)
    sparse.mkdir()
    logger.info("incremental mapping")
    models = pycolmap.incremental_mapping(database, images, sparse, options)
    seconds["mapping"] = time.perf_counter() - t
    best = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
    registered = sorted(img.name for img in best.images.values() if img.has_pose) if best is not None else []
    unregistered = sorted(set(names) - set(registered))
    if len(registered) < MIN_REGISTERED:
        raise SfMError(
            f"structure from motion registered {len(registered)} of {len(names)} photos"
            + (f" ({', '.join(registered)})" if registered else "")
            + f"; a map needs at least {MIN_REGISTERED}. Photos that overlap more (the same place from "
            "nearby viewpoints, 60 % or more in common), or their poses (--poses, --cameras) would do")
    model_dir = out_dir / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir()
    best.write(model_dir)
    cams = {img.name: Camera.from_pycolmap(best.cameras[img.camera_id]) for img in best.images.values()
            if img.has_pose}
    result = SfMResult(model_dir, registered, unregistered, best.num_points3D(), seconds, cams)
    if unregistered:
        logger.warning("%d of %d photos did not register and are left out of the map: %s", len(unregistered),
                       len(names), ", ".join(unregistered))
    return result


def _set_cameras(database: Path, cameras: dict) -> None:
    """Replace the cameras COLMAP guessed with the given ones (one per photo)."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        for image in db.read_all_images():
            cam = db.read_camera(image.camera_id)
            given = cameras[image.name].to_pycolmap()
            given.camera_id = cam.camera_id
            given.has_prior_focal_length = True
            db.update_camera(given)
    finally:
        db.close()


def infer_camera(path: str | os.PathLike):
    """A photo's camera from its EXIF (focal length in mm and the sensor's size, via COLMAP),
    or COLMAP's guess (focal 1.2 x the larger side) where EXIF has none.

    Returns:
        ``(Camera, from_exif)``: a ``SIMPLE_RADIAL`` camera, and whether EXIF gave its focal length.

    Raises:
        ImageReadError: the file cannot be read as an image.
    """
    import pycolmap

    from ..errors import ImageReadError
    from ..geometry.camera import Camera

    try:
        cam = pycolmap.infer_camera_from_image(str(path))
    except Exception as e:  # pycolmap raises a bare RuntimeError/ValueError with glog text
        raise ImageReadError(f"{path}: cannot read it as an image to infer its camera ({str(e).splitlines()[-1]})") \
            from None
    return Camera.from_pycolmap(cam), bool(cam.has_prior_focal_length)
