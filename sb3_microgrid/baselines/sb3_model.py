"""A saved Stable-Baselines3 model (and its VecNormalize statistics) as a controller."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from ..envs import MicrogridEnv


ALGORITHMS: dict[str, type[BaseAlgorithm]] = {cls.__name__.lower(): cls for cls in (A2C, DDPG, PPO, SAC, TD3)}


def _algorithm(name: str) -> type[BaseAlgorithm]:
    classes = ALGORITHMS
    if name.lower() not in classes:
        raise ValueError(f"unknown algorithm {name!r}; allowed: {sorted(classes)}")
    return classes[name.lower()]


class SB3Controller:
    """Acts with ``model.predict(obs, deterministic=True)`` on observations normalised with the
    statistics saved at training time.

    :param path: the model's ``.zip``
    :param algo: its algorithm class name (the zip does not record it), or the class itself
    :param vecnormalize: the ``VecNormalize`` statistics file; by default ``<path stem>_vecnormalize.pkl``
        beside the model if it exists, otherwise observations are passed as they are
    :param deterministic: act with the policy's mean action
    """

    def __init__(self, path: str | Path, algo: str | type[BaseAlgorithm] = "ppo", vecnormalize: str | Path | None = None, deterministic: bool = True) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no model file at {path}")
        cls = _algorithm(algo) if isinstance(algo, str) else algo
        self.model = cls.load(path, device="cpu")
        self.name = path.stem
        stats = Path(vecnormalize) if vecnormalize else path.with_name(f"{path.stem}_vecnormalize.pkl")
        self._stats_path = stats if stats.exists() else None
        if vecnormalize and self._stats_path is None:
            raise FileNotFoundError(f"no VecNormalize statistics at {vecnormalize}")
        self._normalizer: VecNormalize | None = None
        self.deterministic = deterministic

    @classmethod
    def from_model(cls, model: BaseAlgorithm, normalizer: VecNormalize | None = None, name: str = "model", deterministic: bool = True) -> "SB3Controller":
        """Wrap a model in memory (e.g. during training) and the ``VecNormalize`` it trains with;
        ``normalize_obs`` only reads the running statistics, so evaluating does not change them."""
        controller = cls.__new__(cls)
        controller.model, controller.name, controller.deterministic = model, name, deterministic
        controller._stats_path, controller._normalizer = None, normalizer
        return controller

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        # Box equality ignores the layout: two scenarios with different windows can have the same size.
        trained = getattr(self.model.observation_space, "layout", None)
        if trained is not None and trained != env.obs_layout:
            raise ValueError(f"model {self.name!r} was trained on another observation layout than this scenario's ({trained} vs {env.obs_layout})")
        if self._stats_path is not None and self._normalizer is None:
            self._normalizer = VecNormalize.load(str(self._stats_path), DummyVecEnv([lambda: env]))
            self._normalizer.training = False
            self._normalizer.norm_reward = False

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self._normalizer is not None:
            obs = self._normalizer.normalize_obs(obs)
        action, _ = self.model.predict(obs, deterministic=self.deterministic)
        return np.asarray(action, dtype=np.float64)
