"""Two maps of one place made one (``global-loc map merge A B --out C``), without images.

1. **Alignment.** Each keyframe of B is localized in A from what B keeps of it (its local
   features: observations, and free keypoints where B stores them) with A's localizer (global
   query only: no tracking, refinement, relative pose or query rotations). Its global
   descriptor is made again from those features with A's vocabulary (VLAD), or taken from B
   where both maps' descriptors come from the same network with no map-fitted PCA. Every
   localized keyframe gives a camera centre and an orientation in both frames; a similarity
   ``a_from_b`` (``X_a = s R X_b + t``; rigid with ``rigid=True``, ``s = 1``: maps whose poses
   are metric, from odometry, tf or ground truth) is fitted to them by RANSAC over pairs of
   keyframes (:func:`_fit_robust`), then by least squares over the agreeing keyframes' centres
   and camera axes (Umeyama 1991, :func:`pycolmap.estimate_sim3d`). A localized keyframe agrees
   when its centre lies within ``max_error_m`` of the transformed one and its orientation within
   ``max_error_deg``. Too few that agree, and the merge is refused.
2. **Addition.** B's keyframes, their poses carried into A's frame, are added to A as a new run
   is by ``global-loc index --update`` (:func:`global_loc.map.update.extend_map`): A's ids,
   poses and points stay; pairs between B's keyframes and between B's and A's are matched; B's
   tracks are triangulated again in A's frame and A's points extended by B's observations.

What B loses: its own points and their reference features are made again from its kept
keypoints (a point B built from keypoints it did not keep cannot be); its camera corrections
are kept as its cameras; its vocabulary is not used (A's describes B's keyframes; a B far from
A's data gets coarser descriptors, as an update does).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, MapMismatchError
from ..geometry.transforms import Pose, rotation_angle_deg
from ..types import Keyframe, Status
from .index import MapIndex, kept_features

logger = logging.getLogger(__name__)

#: the settings of A's localizer while B's keyframes are localized in it: a global query per
#: keyframe from its stored features, nothing that needs an image or a previous frame
_ALIGN_SETTINGS = {"tracking.enabled": False, "refinement.method": "none", "relpose.enabled": False,
                   "localization.query_rotations": [0]}


@dataclass(frozen=True)
class Similarity:
    """A similarity transform ``a_from_b``: ``X_a = scale * R @ X_b + t``.

    Attributes:
        scale: float > 0 (1: rigid); R: (3, 3) float64 rotation; t: (3,) float64, metres of a.
    """

    scale: float
    R: np.ndarray
    t: np.ndarray

    def transform_points(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) float64 points of frame b in frame a."""
        return self.scale * np.asarray(xyz, np.float64) @ np.asarray(self.R).T + self.t

    def transform_pose(self, cam_from_b: Pose) -> Pose:
        """A camera's ``cam_from_world`` with the world in frame b as ``cam_from_world`` with the
        world in frame a (its translation in metres of a: the camera frame scales with the
        world, so that the images project the same)."""
        R = cam_from_b.R @ np.asarray(self.R).T
        return Pose(R, self.scale * np.asarray(cam_from_b.t, np.float64) - R @ self.t)

    def inverse(self) -> "Similarity":
        R = np.asarray(self.R).T
        return Similarity(1.0 / self.scale, R, -R @ self.t / self.scale)


def transform_map(m: MapIndex, a_from_b: Similarity, frame_id: str | None = None) -> MapIndex:
    """Map ``m`` (in frame b) moved to frame a: keyframe poses and 3D points transformed, all else
    kept (the points' covariances are computed again from the moved geometry when needed).

    Args:
        m: a map; a_from_b: the transform; frame_id: the new map frame's name (default: kept).
    Returns:
        A new :class:`MapIndex` (``m`` is not changed).
    """
    import dataclasses

    poses = [a_from_b.transform_pose(m.cam_from_world(i)) for i in range(m.num_keyframes)]
    return dataclasses.replace(
        m, q_wxyz=np.array([p.q_wxyz for p in poses]).reshape(-1, 4), t=np.array([p.t for p in poses]).reshape(-1, 3),
        points_xyz=a_from_b.transform_points(m.points_xyz), frame_id=frame_id or m.frame_id,
        metadata=dict(m.metadata))


@dataclass
class Alignment:
    """The transform of map B's frame into map A's, and how well B's keyframes agree with it.

    Attributes:
        a_from_b: the :class:`Similarity` (scale 1 for a rigid alignment).
        rigid: whether the scale was held at 1.
        localized: names of B's keyframes localized in A; ``agreeing``: those that agree
            with the transform (the fit's inliers).
        residuals_m, residuals_deg: (n,) float64 per localized keyframe (in ``localized``'s
            order): distance between its centre localized in A and its centre in B carried
            into A (metres of A), and the angle between the two orientations (degrees).
        tried: B's keyframes tried; ``max_error_m``, ``max_error_deg``: the agreement bounds.
        not_localized: B's keyframes not localized in A, with the localizer's reason.
    """

    a_from_b: Similarity
    rigid: bool
    localized: list[str]
    agreeing: list[str]
    residuals_m: np.ndarray
    residuals_deg: np.ndarray
    tried: int
    max_error_m: float
    max_error_deg: float
    not_localized: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready summary (recorded in the merged map's edit)."""
        agree = np.isin(self.localized, self.agreeing) if self.localized else np.zeros(0, bool)
        T = self.a_from_b
        return {"scale": round(float(T.scale), 9), "rotation": np.round(T.R, 9).tolist(),
                "translation": np.round(T.t, 9).tolist(), "rigid": self.rigid, "tried": self.tried,
                "localized": len(self.localized), "agreeing": len(self.agreeing),
                "median_residual_m": _median(self.residuals_m[agree]),
                "max_residual_m": _max(self.residuals_m[agree]),
                "median_residual_deg": _median(self.residuals_deg[agree]),
                "max_residual_deg": _max(self.residuals_deg[agree]),
                "max_error_m": self.max_error_m, "max_error_deg": self.max_error_deg}

    def format_text(self) -> str:
        d = self.to_dict()
        T = self.a_from_b
        lines = [f"alignment of B in A ({'rigid' if self.rigid else 'similarity'}): scale {T.scale:.6f}, rotation "
                 f"{rotation_angle_deg(T.R):.3f} deg, translation [{', '.join(f'{v:.4f}' for v in T.t)}] m",
                 f"  {d['localized']}/{self.tried} of B's keyframes localized in A, {d['agreeing']} agree "
                 f"(within {self.max_error_m:.4g} m and {self.max_error_deg:g} deg)",
                 f"  residuals of those that agree: median {1000 * d['median_residual_m']:.3f} mm / "
                 f"{d['median_residual_deg']:.3f} deg, max {1000 * d['max_residual_m']:.3f} mm / "
                 f"{d['max_residual_deg']:.3f} deg"]
        outliers = [(n, r, a) for n, r, a in zip(self.localized, self.residuals_m, self.residuals_deg)
                    if n not in set(self.agreeing)]
        for n, r, a in outliers[:10]:
            lines.append(f"  disagrees: {n}: {r:.4f} m / {a:.2f} deg")
        return "\n".join(lines)


def _descriptors_from_b(a: MapIndex, b: MapIndex, global_model) -> bool:
    """Whether B's stored global descriptors can be searched in A (True) or must be made again
    from B's local features with A's model state (False).

    Raises:
        MapMismatchError: a network descriptor (which needs the image) of another model, or
            reduced by a PCA fitted to one map.
    """
    if global_model.requires_fit:
        return False
    if a.global_descriptor.get("name") != b.global_descriptor.get("name") or \
            a.global_descriptors.shape[1] != b.global_descriptors.shape[1]:
        raise MapMismatchError(f"A's global descriptors are {a.global_descriptor.get('name')} "
                               f"({a.global_descriptors.shape[1]}-d), B's {b.global_descriptor.get('name')} "
                               f"({b.global_descriptors.shape[1]}-d): build B with A's preset")
    if any(k.startswith("pca_") for k in (*a.global_state, *b.global_state)):
        raise MapMismatchError(
            "the maps' global descriptors are reduced by a PCA fitted to each map, and B's images are not in it to "
            "describe them again: add B's run to A with `global-loc index --update A` from its images or bag")
    return True


def align_maps(a: MapIndex, b: MapIndex, conf=None, rigid: bool = False, max_error_m: float | None = None,
               max_error_deg: float = 2.0, min_agreeing: int = 3, seed: int = 0, progress: bool = False) -> Alignment:
    """Localize B's keyframes in A and fit the transform of B's frame into A's (see the module).

    Args:
        a, b: maps made with the same local features (and global descriptor model).
        conf: A's localization configuration (default :func:`~global_loc.localizer.conf_for_map`
            of A); tracking, refinement, relative pose and query rotations are switched off.
        rigid: hold the scale at 1 (maps whose poses are metric).
        max_error_m: agreement bound on camera centres, metres of A (default: 2 % of the extent
            of the localized centres in A, at least 1 mm).
        max_error_deg: agreement bound on orientations, degrees.
        min_agreeing: fewest agreeing keyframes for an alignment (at least 3).
        seed: RANSAC seed (the alignment is reproducible).
    Returns:
        The :class:`Alignment`.
    Raises:
        MapMismatchError: maps of other local features, or descriptors that cannot be compared.
        InputError: fewer than ``min_agreeing`` keyframes localize in A, or agree on one transform.
    """
    from ..localizer import Localizer, conf_for_map
    from ..config import resolve_conf, to_dict

    if a.local_features.get("name") != b.local_features.get("name") or \
            a.obs_descriptors.shape[1] != b.obs_descriptors.shape[1]:
        raise MapMismatchError(f"A holds {a.local_features.get('name')} features ({a.obs_descriptors.shape[1]}-d), "
                               f"B {b.local_features.get('name')} ({b.obs_descriptors.shape[1]}-d): maps merge "
                               "only when built with the same local features (same preset)")
    base = to_dict(conf if conf is not None else conf_for_map(a))
    loc = Localizer(a, resolve_conf(None, (), _ALIGN_SETTINGS, base=base))
    stored = _descriptors_from_b(a, b, loc.global_model)
    centres_a, centres_b, rot_a, rot_b, names, failed = [], [], [], [], [], {}
    rows = range(b.num_keyframes)
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc="localizing B's keyframes in A", unit="keyframe")
    for i in rows:
        features, _ = kept_features(b, i)
        cam = b.camera(i)
        blank = np.zeros((cam.height, cam.width), np.uint8)  # aggregation descriptors use the features only
        res = loc.localize(blank, cam, features=features,
                           global_descriptor=np.asarray(b.global_descriptors[i], np.float32) if stored else None)
        if res.status != Status.LOCALIZED:
            failed[b.names[i]] = res.reason or str(res.status)
            continue
        pb = b.cam_from_world(i)
        names.append(b.names[i])
        centres_a.append(res.cam_from_world.center)
        centres_b.append(pb.center)
        rot_a.append(res.cam_from_world.R)
        rot_b.append(pb.R)
    need = max(3, int(min_agreeing))
    if len(names) < need:
        raise InputError(f"only {len(names)} of B's {b.num_keyframes} keyframes localize in A (at least {need} "
                         "needed): do the maps overlap, and were they built with the same preset?")
    ca, cb = np.array(centres_a), np.array(centres_b)
    if max_error_m is None:
        max_error_m = max(1e-3, 0.02 * float(np.linalg.norm(ca.max(0) - ca.min(0))))
    fit, agree = _fit_robust(ca, cb, rot_a, rot_b, rigid, max_error_m, max_error_deg, seed)
    if fit is None:
        raise InputError(f"no {'rigid' if rigid else 'similarity'} transform fits two of the {len(names)} keyframes "
                         f"of B localized in A within {max_error_m:.4g} m and {max_error_deg:g} deg"
                         + (" (if B's scale differs from A's, leave out --rigid)" if rigid else ""))
    for _ in range(5):  # refined over those that agree (centres and orientations)
        if agree.sum() < need:
            break
        fit = _refine(ca[agree], cb[agree], [rot_a[k] for k in np.flatnonzero(agree)],
                      [rot_b[k] for k in np.flatnonzero(agree)], fit[0], rigid)
        new = _agreeing(fit, ca, cb, rot_a, rot_b, max_error_m, max_error_deg)
        if np.array_equal(new, agree):
            break
        agree = new
    res_m, res_deg = _residuals(fit, ca, cb, rot_a, rot_b)
    alignment = Alignment(Similarity(*fit), rigid, names, [n for n, k in zip(names, agree) if k], res_m,
                          res_deg, b.num_keyframes, float(max_error_m), float(max_error_deg), failed)
    if agree.sum() < need:
        raise InputError(f"only {int(agree.sum())} of the {len(names)} keyframes of B localized in A agree on one "
                         f"transform (at least {need} needed, within {max_error_m:.4g} m and {max_error_deg:g} deg): "
                         f"the maps may not overlap, or B is localized in the wrong places\n"
                         + alignment.format_text())
    logger.info("%s", alignment.format_text())
    return alignment


def merge_maps(a: MapIndex, b: MapIndex, alignment: Alignment, conf=None, prefix: str = "",
               progress: bool = False) -> MapIndex:
    """A with B's keyframes added in A's frame (see the module).

    Args:
        a, b: the maps (not changed); alignment: from :func:`align_maps`.
        conf: A's preset (default :func:`~global_loc.localizer.conf_for_map` of A).
        prefix: put before B's keyframe names (names must be unique in the merged map).
    Returns:
        The merged :class:`MapIndex`; ``metadata["edits"]`` records the merge and the alignment.
    Raises:
        InputError: a name of B (after ``prefix``) that A holds.
        MapMismatchError: see :func:`~global_loc.map.update.extend_map`.
    """
    from ..localizer import conf_for_map
    from .builder import MapBuilder
    from .update import extend_map
    from .workers import ExtractedKeyframe

    conf = conf if conf is not None else conf_for_map(a)
    builder = MapBuilder(conf, frame_id=a.frame_id)
    stored = _descriptors_from_b(a, b, builder.global_model)
    dense = a.point_features is not None and b.point_features is not None
    if a.point_features is not None and not dense:
        raise MapMismatchError("A keeps reference features of its points for feature-metric refinement and B does not:"
                               " build B with A's preset")
    clash = sorted(set(a.names) & {prefix + n for n in b.names})
    if clash:
        raise InputError(f"A already holds keyframe(s) named {', '.join(clash[:5])}"
                         f"{f' (and {len(clash) - 5} more)' if len(clash) > 5 else ''}: give B's names a prefix "
                         "(--prefix B/)")
    pf = np.asarray(b.point_features) if dense else None
    for i in range(b.num_keyframes):
        features, point = kept_features(b, i)
        samples = None
        if dense:  # each observation takes its point's reference feature; free keypoints none
            samples = np.full((len(point), pf.shape[1]), np.nan, np.float16)
            samples[point >= 0] = pf[point[point >= 0]]
        kf = Keyframe(prefix + b.names[i], b.camera(i), alignment.a_from_b.transform_pose(b.cam_from_world(i)),
                      float(b.stamps[i]))
        builder.add_extracted(kf, ExtractedKeyframe(features, np.asarray(b.global_descriptors[i], np.float32)
                                                    if stored else None, samples))
    builder.source = {"kind": "merge", "map": b.metadata.get("source", {}), "prefix": prefix}
    m = extend_map(builder, a, progress)
    edit = m.metadata["edits"][-1]
    edit["op"] = "merge"
    edit["alignment"] = alignment.to_dict()
    return m


def _unpack(est, rigid: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, R, t) of a pycolmap Sim3d or Rigid3d (tgt_from_src)."""
    R = np.asarray(est.rotation.matrix(), np.float64)
    return (1.0 if rigid else float(est.scale)), R, np.asarray(est.translation, np.float64).reshape(3)


def _fit_robust(ca, cb, rot_a, rot_b, rigid: bool, max_m: float, max_deg: float, seed: int, trials: int = 2000):
    """RANSAC over pairs of keyframes (rigid: each keyframe alone): the rotation from one
    keyframe's two orientations, the scale from the pair's distance in both maps (1 when
    ``rigid``), the translation from the first centre; the hypothesis most keyframes agree with
    (then the smallest summed position residual of those) wins. Returns ``((s, R, t), agree mask)`` or ``(None, None)``.

    Centres alone (:func:`pycolmap.estimate_sim3d_robust`) leave the rotation loose where the
    centres lie near a line or an arc (6 deg off on a synthetic ring of 4 keyframes); each
    keyframe's orientation pins it."""
    n = len(ca)
    # rigid: one keyframe makes a hypothesis (its partner would only set the scale)
    pairs = [(i, i) for i in range(n)] if rigid else [(i, j) for i in range(n) for j in range(n) if i != j]
    rng = np.random.default_rng(seed)
    if len(pairs) > trials:
        pairs = [pairs[k] for k in rng.choice(len(pairs), trials, replace=False)]
    best, best_key = None, None
    for i, j in pairs:
        R = rot_a[i].T @ rot_b[i]  # a_from_b: cam_from_a = cam_from_b @ R.T
        if rigid:
            scale = 1.0
        else:
            db = np.linalg.norm(cb[i] - cb[j])
            if db < 1e-12:
                continue
            scale = float(np.linalg.norm(ca[i] - ca[j]) / db)
        fit = (scale, R, ca[i] - scale * R @ cb[i])
        res_m, res_deg = _residuals(fit, ca, cb, rot_a, rot_b)
        ok = (res_m <= max_m) & (res_deg <= max_deg)
        key = (int(ok.sum()), -float(res_m[ok].sum()))
        if best_key is None or key > best_key:
            best, best_key = (fit, ok), key
    if best is None or best_key[0] < 2:
        return None, None
    return best


def _refine(ca, cb, rot_a, rot_b, scale: float, rigid: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (or rigid) transform over the agreeing keyframes' centres and
    orientations: Umeyama (1991, :func:`pycolmap.estimate_sim3d`) over each centre and the tips
    of its camera's axes, the axes as long as the centres' spread (so that orientation and
    position weigh alike), the axes in A scaled by the current ``scale``."""
    import pycolmap

    spread = float(np.median(np.linalg.norm(cb - cb.mean(0), axis=1)))
    length = spread if spread > 0 else 1.0
    src, tgt = [cb], [ca]
    for k in range(3):  # camera axis k in world coordinates: row k of cam_from_world's rotation
        src.append(cb + length * np.array([r[k] for r in rot_b]))
        tgt.append(ca + scale * length * np.array([r[k] for r in rot_a]))
    src, tgt = np.concatenate(src), np.concatenate(tgt)
    est = pycolmap.estimate_rigid3d(src, tgt) if rigid else pycolmap.estimate_sim3d(src, tgt)
    if est is None:
        raise InputError("the alignment of B in A is degenerate (its agreeing keyframes coincide)")
    return _unpack(est, rigid)


def _residuals(fit, ca, cb, rot_a, rot_b) -> tuple[np.ndarray, np.ndarray]:
    s, R, t = fit
    res_m = np.linalg.norm(ca - (s * cb @ R.T + t), axis=1)
    res_deg = np.array([rotation_angle_deg(ra @ (rb @ R.T).T) for ra, rb in zip(rot_a, rot_b)])
    return res_m, res_deg


def _agreeing(fit, ca, cb, rot_a, rot_b, max_m: float, max_deg: float) -> np.ndarray:
    res_m, res_deg = _residuals(fit, ca, cb, rot_a, rot_b)
    return (res_m <= max_m) & (res_deg <= max_deg)


def _median(x: np.ndarray) -> float:
    return round(float(np.median(x)), 9) if len(x) else float("nan")


def _max(x: np.ndarray) -> float:
    return round(float(np.max(x)), 9) if len(x) else float("nan")
