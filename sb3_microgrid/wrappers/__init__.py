"""Faces of ``Microgrid-v0`` built from baseline controllers: the layer above ``envs`` and ``baselines``."""

from .residual import ResidualController, ResidualObservation, ResidualWrapper, combine

__all__ = ["ResidualController", "ResidualObservation", "ResidualWrapper", "combine"]
