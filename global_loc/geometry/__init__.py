"""Transforms, camera models, triangulation, PnP and covisibility clustering."""
