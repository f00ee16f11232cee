"""Faces of ``Microgrid-v0`` built from baseline controllers: the layer above ``envs`` and ``baselines``."""

from .residual import ResidualWrapper, combine, residual_layout, with_base_action

__all__ = ["ResidualWrapper", "combine", "residual_layout", "with_base_action"]
