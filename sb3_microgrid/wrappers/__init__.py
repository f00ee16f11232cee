"""Faces of ``Microgrid-v0`` built from baseline controllers: the layer above ``envs`` and ``baselines``."""

from .calibration import CalibratedController, CalibrationWrapper
from .policy_view import PolicyView
from .residual import ResidualController, ResidualObservation, ResidualWrapper, combine

__all__ = ["CalibratedController", "CalibrationWrapper", "PolicyView", "ResidualController", "ResidualObservation", "ResidualWrapper", "combine"]
