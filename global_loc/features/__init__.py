"""Local feature extractors, one file per model, registered by name.

Use :func:`create_extractor` with ``{"name": "sift", ...options}``.
"""
from ..registry import Registry
from .base import LocalFeatureExtractor

EXTRACTORS: Registry[LocalFeatureExtractor] = Registry(
    "local feature extractor",
    {
        "sift": "global_loc.features.sift",
        "aliked": "global_loc.features.aliked",
        "r2d2": "global_loc.features.r2d2",
        "xfeat": "global_loc.features.xfeat",
        "superpoint": "global_loc.features.superpoint",
        "hfnet": "global_loc.features.hfnet",
        "disk": "global_loc.features.disk",
    },
)


def create_extractor(conf: dict, **kwargs) -> LocalFeatureExtractor:
    """Build a local feature extractor from ``{"name": ..., **options}``.

    Raises:
        ConfigError: unknown model name or option.
    """
    return EXTRACTORS.create(conf, **kwargs)


__all__ = ["EXTRACTORS", "LocalFeatureExtractor", "create_extractor"]
