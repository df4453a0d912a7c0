"""Registries of models by name, with strict per-model configuration.

Each model is one class in one file with a ``Conf`` dataclass whose defaults are its
``default_conf``; the registry builds it from ``{"name": ..., **options}`` and rejects unknown
options by name (see :func:`global_loc.config.from_dict`).
"""
from __future__ import annotations

import importlib
import dataclasses
from typing import ClassVar, Generic, TypeVar

from .config import from_dict
from .errors import ConfigError, missing_dependency

T = TypeVar("T")


class ConfiguredModel:
    """Base of the registered models (local features, global descriptors, dense features):
    ``name``, a ``Conf`` dataclass checked strictly, and the record a map keeps of them.

    Args:
        conf: a ``Conf`` instance, a dict of options (checked strictly), or None.
    """

    name: ClassVar[str]
    Conf: ClassVar[type]

    def __init__(self, conf=None, **kwargs):
        self.conf = conf if isinstance(conf, self.Conf) else from_dict(self.Conf, conf, self.name)

    def identity_conf(self) -> dict:
        """The options that determine the model's output (recorded in a map and compared
        when a map is used); options that only change how it is computed are left out."""
        return dataclasses.asdict(self.conf)

    def info(self) -> dict:
        """Name, output size (``dim``) and configuration, as recorded in a map."""
        return {"name": self.name, "dim": self.dim, "conf": self.identity_conf()}


class Registry(Generic[T]):
    """Named model classes of one kind (local features, global descriptors).

    Args:
        kind: what the models are, for error messages.
        modules: module paths imported on first use so that their classes register.
    """

    def __init__(self, kind: str, modules: dict[str, str]):
        self.kind = kind
        self._modules = dict(modules)
        self._classes: dict[str, type] = {}

    def register(self, cls):
        """Class decorator: register ``cls`` under ``cls.name``."""
        self._classes[cls.name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(set(self._modules) | set(self._classes))

    def get(self, name: str) -> type:
        if name not in self._classes:
            if name not in self._modules:
                raise ConfigError(
                    f"unknown {self.kind} '{name}'; available: {', '.join(self.names())}"
                )
            try:
                importlib.import_module(self._modules[name])
            except ImportError as e:  # an optional package (torch, onnxruntime): one line that says how
                missing = missing_dependency(e)
                if missing is None:
                    raise
                raise missing from None
        return self._classes[name]

    def conf_from_dict(self, conf: dict):
        """``(cls, Conf instance)`` from ``{"name": ..., **options}``, strictly checked."""
        if "name" not in conf:
            raise ConfigError(f"a {self.kind} configuration needs a 'name'")
        options = {k: v for k, v in conf.items() if k != "name"}
        cls = self.get(conf["name"])
        return cls, from_dict(cls.Conf, options, where=conf["name"])

    def create(self, conf: dict, **kwargs) -> T:
        """Build the model named by ``conf["name"]`` with the other keys as options."""
        cls, c = self.conf_from_dict(conf)
        return cls(c, **kwargs)
