"""Local feature extractors, one file per model, registered by name.

Use :func:`create_extractor` with ``{"name": "sift", ...options}``.
"""
from ..registry import Registry
from .base import LocalFeatureExtractor

EXTRACTORS: Registry[LocalFeatureExtractor] = Registry(
    "local feature extractor",
    {"sift": "global_loc.features.sift"},
)


def create_extractor(conf: dict, **kwargs) -> LocalFeatureExtractor:
    """Build a local feature extractor from ``{"name": ..., **options}``.

    Raises:
        ConfigError: unknown model name or option.
    """
    return EXTRACTORS.create(conf, **kwargs)


__all__ = ["EXTRACTORS", "LocalFeatureExtractor", "create_extractor"]
