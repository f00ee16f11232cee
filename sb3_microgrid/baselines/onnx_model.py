"""An exported policy (``sb3-microgrid export``) as a controller, scored by the same ``evaluate()`` as the
model it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..envs import MicrogridEnv, ObservationLayout
from ..export import OnnxPolicy


class LayoutMismatchError(ValueError):
    """An exported policy run on an env whose observation or action is not the one it was exported for."""


class OnnxController:
    """Acts with an export folder's ``policy.onnx`` on onnxruntime (normalisation and clipping are in
    the graph). A recurrent policy carries its LSTM state from step to step and starts afresh at each
    :meth:`reset`. The manifest's env wrappers (a residual run's base controller) are put back by
    :func:`~sb3_microgrid.baselines.make_controller`, as for the model's zip.

    :param path: the export folder
    :param name: the label in tables (default: the folder's name)
    :raises ~sb3_microgrid.export.ManifestError: if the folder is not a usable export
    """

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.policy = OnnxPolicy(path)
        self.name = name or Path(path).name
        self._state: tuple[np.ndarray, np.ndarray] | None = None
        self._episode_start = np.ones(1, dtype=np.float32)

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        """Check the policy was exported for ``env``'s observation and action; start a new episode.

        The scenario is not compared with the manifest's ``scenario.sha256``: evaluating a policy on another site of
        the same layout (another tariff, another battery) is a legitimate use, as for the model's zip. The env's
        observation is the env's own, so nothing of the export's scenario enters it (the site controller, which
        builds observations with the export's scenario, refuses one that does not match).

        :raises LayoutMismatchError: naming both layouts, if it was not
        """
        layout = getattr(env, "obs_layout", None)
        if not isinstance(layout, ObservationLayout) or layout != self.policy.layout:
            raise LayoutMismatchError(f"{self.name!r} was exported for another observation layout than this env's ({self.policy.layout} vs {layout})")
        # A policy under env wrappers (a residual) gives their input, which they check themselves.
        if self.policy.manifest["action"]["is_env_action"] and env.action_space.shape != (self.policy.action_dim,):
            raise LayoutMismatchError(f"{self.name!r} gives actions of shape ({self.policy.action_dim},), this env takes {env.action_space.shape}")
        if self.policy.recurrent:
            self._state = self.policy.initial_state(1)
        self._episode_start = np.ones(1, dtype=np.float32)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if not self.policy.recurrent:
            return self.policy.act(obs).astype(np.float64)
        action, self._state = self.policy.step(obs, self._state, self._episode_start)
        self._episode_start = np.zeros(1, dtype=np.float32)
        return action.astype(np.float64)
