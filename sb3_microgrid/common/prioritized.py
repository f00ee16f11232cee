"""Set-up shared by the prioritized off-policy algorithms (``PerSAC``, ``PerTD3``)."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.buffers import ReplayBuffer

from sb3_microgrid.buffers import PrioritizedReplayBuffer


class PrioritizedOffPolicyMixin:
    """Shared set-up of the prioritized off-policy algorithms (``PerSAC``, ``PerTD3``): default to a
    :class:`PrioritizedReplayBuffer`, refuse any other, refuse n-step returns (``n_steps`` other than 1), and anneal
    ``beta`` with training progress unless the buffer anneals it itself (``beta_steps``)."""

    def __init__(self, policy: Any, env: Any, *, replay_buffer_class: type[ReplayBuffer] | None = None, **kwargs: Any) -> None:
        super().__init__(policy, env, replay_buffer_class=replay_buffer_class or PrioritizedReplayBuffer, **kwargs)  # type: ignore[call-arg]

    def _setup_model(self) -> None:
        # SB3 only builds n-step returns into its own NStepReplayBuffer: with the prioritized buffer n_steps would be
        # ignored (1-step targets), and the replay_buffer_kwargs its warning suggests are not the buffer's
        if self.n_steps != 1:  # type: ignore[attr-defined]
            raise ValueError(f"{type(self).__name__} needs n_steps=1 (n-step returns are not supported), got {self.n_steps!r}")  # type: ignore[attr-defined]
        super()._setup_model()  # type: ignore[misc]
        if not isinstance(self.replay_buffer, PrioritizedReplayBuffer):  # type: ignore[attr-defined]
            raise TypeError(f"{type(self).__name__} needs a PrioritizedReplayBuffer, got {type(self.replay_buffer).__name__}")  # type: ignore[attr-defined]

    def _prioritized_buffer(self) -> PrioritizedReplayBuffer:
        """The buffer, with ``beta`` set from training progress when the algorithm anneals it."""
        buffer: PrioritizedReplayBuffer = self.replay_buffer  # type: ignore[attr-defined]
        if buffer.beta_steps is None:
            buffer.set_progress(1.0 - self._current_progress_remaining)  # type: ignore[attr-defined]
        return buffer
