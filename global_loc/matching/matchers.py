"""The two matching jobs of the pipeline behind one small interface each, by ``matching.name``:

- **keyframe pairs** when mapping (:class:`PairMatcher`): two keyframes' local features ->
  index pairs, then the builder's epipolar check and triangulation;
- **a place** when localizing (:class:`PlaceMatcher`): the query's local features against the
  observations of a place's keyframes -> 2D-3D matches (query keypoint row, map point row).

``nn``: mutual nearest neighbour + Lowe's ratio test (:func:`~global_loc.matching.match_descriptors`),
a place matched at once against all its observations, grouped by 3D point. ``lightglue``
(:class:`~global_loc.matching.lightglue.LightGlueMatcher`): a place matched keyframe by keyframe,
2D-2D against each keyframe's observations, each match lifted to the point that keypoint observes
(as hloc's ``localize_sfm`` lifts), pairs of the same query keypoint and point kept once.
"""
from __future__ import annotations

import numpy as np

from .nn import Matches, match_descriptors


class PairMatcher:
    """Matches between two keyframes' local features (:class:`~global_loc.types.LocalFeatures`):
    ``match(a, b) -> (idx_a (K,) int64, idx_b (K,) int64)``."""

    def __init__(self, conf):
        self.conf = conf

    def match(self, a, b) -> tuple[np.ndarray, np.ndarray]:
        m = match_descriptors(a.descriptors, b.descriptors, self.conf.ratio_threshold, self.conf.mutual)
        return m.query, m.db


class LightGluePairMatcher(PairMatcher):
    """Keyframe pairs matched by LightGlue."""

    def __init__(self, conf, lightglue):
        super().__init__(conf)
        self.lightglue = lightglue

    def match(self, a, b):
        i, j, _ = self.lightglue.match(a.keypoints, a.descriptors, a.image_size, b.keypoints, b.descriptors,
                                       b.image_size)
        return i, j


class PlaceMatcher:
    """2D-3D matches of a query to a place: ``match(features, place) ->``
    :class:`~global_loc.matching.Matches` (``query``: keypoint rows, ``db``: map point rows,
    ``similarity``: descriptor similarity or match score)."""

    def __init__(self, map_index, conf):
        self.map, self.conf = map_index, conf

    def match(self, features, place: list[int]) -> Matches:
        db_desc, db_points = self.map.gather_observations(place)
        mt = self.conf
        return match_descriptors(features.descriptors, db_desc, mt.ratio_threshold, mt.mutual,
                                 groups=db_points, max_candidates=mt.max_candidates, threads=mt.threads)


class LightGluePlaceMatcher(PlaceMatcher):
    """A place matched keyframe by keyframe with LightGlue, the matches lifted to 3D."""

    def __init__(self, map_index, conf, lightglue):
        super().__init__(map_index, conf)
        self.lightglue = lightglue

    def match(self, features, place):
        m = self.map
        q, pts, score = [], [], []
        for k in place:
            a, b = int(m.obs_offsets[k]), int(m.obs_offsets[k + 1])
            if b <= a:
                continue
            cam = m.camera(k)
            desc = np.asarray(m.obs_descriptors[a:b], np.float32)
            i, j, s = self.lightglue.match(features.keypoints, features.descriptors, features.image_size,
                                           m.obs_keypoints[a:b], desc, (cam.width, cam.height))
            ok = np.all(np.isfinite(desc[j]), axis=1)  # a damaged file's descriptor matches nothing
            q.append(i[ok])
            pts.append(np.asarray(m.obs_point_index[a:b])[j[ok]])
            score.append(s[ok])
        if not q:
            return Matches.empty()
        q, pts, score = np.concatenate(q), np.concatenate(pts).astype(np.int64), np.concatenate(score)
        # one (query keypoint, point) pair once, with its best score; a keypoint matched to
        # different points by different keyframes keeps each (RANSAC chooses)
        order = np.lexsort((-score, pts, q))
        q, pts, score = q[order], pts[order], score[order]
        first = np.ones(len(q), bool)
        first[1:] = (q[1:] != q[:-1]) | (pts[1:] != pts[:-1])
        return Matches(q[first], pts[first], score[first].astype(np.float32))


def create_lightglue(conf, features_conf: dict, device: str = "auto", models_dir=None, descriptor_dim=None):
    """The :class:`~global_loc.matching.lightglue.LightGlueMatcher` of ``conf`` (a
    :class:`~global_loc.config.MatchingConf` with ``name: lightglue``) for these features, or
    None for ``name: nn``.

    Raises:
        ConfigError: an unknown matcher, or features LightGlue was not trained on.
    """
    from ..errors import ConfigError

    name = getattr(conf, "name", "nn") or "nn"
    if name == "nn":
        return None
    if name != "lightglue":
        raise ConfigError(f"unknown matching.name '{name}'; use nn or lightglue")
    from .lightglue import LightGlueMatcher

    return LightGlueMatcher(features_conf, conf, device=device, models_dir=models_dir, descriptor_dim=descriptor_dim)


def create_pair_matcher(conf, features_conf: dict, device: str = "auto", models_dir=None,
                        descriptor_dim=None) -> PairMatcher:
    """The keyframe-pair matcher of ``matching.name`` (see :func:`create_lightglue` for the errors)."""
    lg = create_lightglue(conf, features_conf, device, models_dir, descriptor_dim)
    return PairMatcher(conf) if lg is None else LightGluePairMatcher(conf, lg)


def create_place_matcher(map_index, conf, features_conf: dict, device: str = "auto", models_dir=None) -> PlaceMatcher:
    """The place matcher of ``matching.name`` for ``map_index`` (see :func:`create_lightglue`)."""
    dim = int(map_index.obs_descriptors.shape[1]) if map_index.obs_descriptors.ndim == 2 else None
    lg = create_lightglue(conf, features_conf, device, models_dir, dim)
    return PlaceMatcher(map_index, conf) if lg is None else LightGluePlaceMatcher(map_index, conf, lg)
