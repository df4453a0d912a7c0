"""Global descriptors for place recognition, one file per model, and the descriptor index.

Use :func:`create_global_model` with ``{"name": "vlad", ...options}``.
"""
from ..registry import Registry
from .base import GlobalDescriptorModel

GLOBAL_MODELS: Registry[GlobalDescriptorModel] = Registry(
    "global descriptor",
    {
        "vlad": "global_loc.retrieval.vlad",
        "netvlad": "global_loc.retrieval.netvlad",
        "mobilenetvlad": "global_loc.retrieval.mobilenetvlad",
        "hfnet": "global_loc.retrieval.hfnet",
        "gem": "global_loc.retrieval.gem",
    },
)


def create_global_model(conf: dict, **kwargs) -> GlobalDescriptorModel:
    """Build a global descriptor model from ``{"name": ..., **options}``.

    Raises:
        ConfigError: unknown model name or option.
    """
    return GLOBAL_MODELS.create(conf, **kwargs)


__all__ = ["GLOBAL_MODELS", "GlobalDescriptorModel", "create_global_model"]
