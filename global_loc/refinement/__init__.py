"""Feature-metric pose refinement (PixLoc, DRAN) and its dense features.

- :mod:`.base`: the :class:`DenseFeatures` interface (one file per source, registered by name
  in :data:`DENSE_FEATURES`, as the local feature extractors are) and bilinear sampling;
- :mod:`.gradients`: the weight-free source of the default preset;
- :mod:`.aliked`, :mod:`.r2d2`, :mod:`.xfeat`: the dense maps of those networks, reused from
  the preset's extractor where it is the same network (:mod:`.learned`, DRAN);
- :mod:`.reference`: the points' reference features stored in the map;
- :mod:`.featuremetric`: the Levenberg-Marquardt alignment and its acceptance checks.

Use :func:`create_dense_features` with ``{"name": "gradients", ...options}``.
"""
from ..registry import Registry
from .base import DenseFeatures, FeatureLevel, sample_bilinear, sample_pyramid

DENSE_FEATURES: Registry[DenseFeatures] = Registry(
    "dense feature source",
    {
        "gradients": "global_loc.refinement.gradients",
        "aliked": "global_loc.refinement.aliked",
        "r2d2": "global_loc.refinement.r2d2",
        "xfeat": "global_loc.refinement.xfeat",
    },
)


def create_dense_features(conf: dict, **kwargs) -> DenseFeatures:
    """Build a dense feature source from ``{"name": ..., **options}``.

    Raises:
        ConfigError: unknown source or option.
    """
    return DENSE_FEATURES.create(conf, **kwargs)


__all__ = ["DENSE_FEATURES", "DenseFeatures", "FeatureLevel", "create_dense_features", "sample_bilinear",
           "sample_pyramid"]
