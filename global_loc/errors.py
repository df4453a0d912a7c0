"""Exceptions of global_loc.

Every error a user can cause (a missing file, a corrupt image, an unknown camera model, a map
of another version) is a :class:`GlobalLocError`. Its message is one sentence that says what
was wrong and what to do; the command line prints it as one line, without a traceback.
Anything else that escapes is a bug in global_loc.
"""
from __future__ import annotations


class GlobalLocError(Exception):
    """Base class of the errors a user can cause and fix."""


class InputError(GlobalLocError, ValueError):
    """Bad user input: a missing or malformed file, an inconsistent argument."""


class ImageReadError(InputError):
    """An image file is missing, unreadable or corrupt, or disagrees with its camera."""


class CameraModelError(InputError):
    """An unknown camera model, or a parameter list of the wrong length."""


class ConfigError(InputError):
    """A configuration key or value that global_loc does not know."""


class MapFormatError(GlobalLocError):
    """A map file that cannot be read: truncated, corrupt, or of another schema version."""


class MapMismatchError(GlobalLocError):
    """A map built with other models (descriptor type or size) than the ones in use."""


class EmptyMapError(GlobalLocError):
    """A map without keyframes or without 3D points, which cannot localize anything."""
