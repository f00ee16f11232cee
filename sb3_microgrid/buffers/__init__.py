"""Replay buffers: prioritized experience replay over a vectorized sum tree."""

from sb3_microgrid.buffers.prioritized import (
    PrioritizedReplayBuffer,
    PrioritizedReplayBufferSamples,
    priorities_from_errors,
    sample_prioritized,
)
from sb3_microgrid.buffers.sum_tree import SumTree

__all__ = ["PrioritizedReplayBuffer", "PrioritizedReplayBufferSamples", "SumTree", "priorities_from_errors", "sample_prioritized"]
