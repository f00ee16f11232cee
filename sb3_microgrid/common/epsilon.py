"""Epsilon-random actions for off-policy algorithms (``EpsilonSAC``, ``EpsilonTD3``): the replacement is made where
SB3 picks the exploration action, so the replay buffer stores what the env executed."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.noise import ActionNoise


def check_epsilon(value: float) -> float:
    """``value`` as a float, or an error naming ``epsilon`` and its range [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {value}")
    return float(value)


class EpsilonOffPolicyMixin:
    """Put before an off-policy algorithm class: after the algorithm picks its exploration action (policy sample,
    action noise, or the uniform warm-up), each env's action is replaced with probability ``epsilon`` by a uniform
    action over the Box. The replacement is made on the scaled ``buffer_action`` and the env's action is derived
    from it, exactly as SB3 does, so the replay buffer stores what the env executed.

    The uniform actions of a step are one vectorised draw from the action space's own generator, which
    ``model.set_random_seed()`` seeds: the same values, in env order, as one ``action_space.sample()`` per replaced
    env. The action space must therefore be a bounded float ``Box``.

    :param epsilon: probability in [0, 1] of a uniform action; settable (``model.epsilon = x``) at any time, as
        off-policy updates do not depend on the behaviour policy's probabilities
    """

    policy: Any
    action_space: spaces.Box

    def __init__(self, *args: Any, epsilon: float = 0.1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Unset while SB3's load() builds the model without an env; the saved space was checked when first built.
        space = getattr(self, "action_space", None)
        if space is not None and not (isinstance(space, spaces.Box) and space.dtype.kind == "f" and space.is_bounded("both")):
            raise ValueError(f"epsilon-random actions are uniform draws over the action space, which must be a bounded float Box, got {space}")
        self.epsilon = epsilon

    @property
    def epsilon(self) -> float:
        return self._epsilon

    @epsilon.setter
    def epsilon(self, value: float) -> None:
        self._epsilon = check_epsilon(value)

    def _sample_action(self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        action, buffer_action = super()._sample_action(learning_starts, action_noise, n_envs)  # type: ignore[misc]
        take = np.random.random(n_envs) < self.epsilon
        if not take.any():
            return action, buffer_action
        buffer_action = buffer_action.copy()
        # One draw for all replaced envs from the space's seeded generator: the values of a space.sample() per env.
        space = self.action_space
        uniform = space.np_random.uniform(space.low, space.high, size=(int(take.sum()), *space.shape)).astype(space.dtype)
        buffer_action[take] = self.policy.scale_action(uniform)
        return self.policy.unscale_action(buffer_action), buffer_action
