"""Descriptor matching."""
from .nn import Matches, match_descriptors

__all__ = ["Matches", "match_descriptors"]
