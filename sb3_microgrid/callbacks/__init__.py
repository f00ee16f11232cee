"""Training callbacks: learning-rate control through the schedule, exact KL per update, curriculum,
microgrid metrics, and checkpoints a run resumes from without loss. Each is a ``BaseCallback`` with
plain-typed constructor arguments (usable from YAML) and composes with the others in a ``CallbackList``;
see ``docs/training_callbacks.md`` (checkpoints: ``docs/training.md``)."""

from .adaptive_lr import ReduceLROnPlateau, lr_scale_schedule
from .aux_value_replay import AuxiliaryValueReplayCallback
from .checkpoint import CheckpointSetCallback
from .curriculum import CurriculumCallback
from .kl import KLMonitorCallback
from .metrics import MicrogridMetricsCallback

__all__ = ["AuxiliaryValueReplayCallback", "CheckpointSetCallback", "CurriculumCallback", "KLMonitorCallback", "MicrogridMetricsCallback", "ReduceLROnPlateau", "lr_scale_schedule"]
