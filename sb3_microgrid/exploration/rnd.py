"""Random Network Distillation (Burda et al. 2018, "Exploration by Random Network Distillation") as a reward
wrapper: the bonus is the error of a predictor trained to imitate a fixed random network, high on observations
unlike those seen so far and falling as they become familiar."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn
from torch import nn

from ..common.arguments import checked_number
from ..scenario import SEED_MAX


class RNDRewardWrapper(VecEnvWrapper):
    """Adds ``beta · r_int`` to each reward.

    For the next observation ``s′`` of each env (``info["terminal_observation"]`` at episode ends):

    1. ``s′`` updates a running mean/std of observations and is normalised, ``x = clip((s′ − mean) / sqrt(var + 1e-8),
       −obs_clip, obs_clip)``, before both networks.
    2. ``e = ‖f̂(x) − f(x)‖²`` (sum over the embedding), with ``f`` a fixed random MLP and ``f̂`` the trained predictor,
       computed before the predictor trains on ``s′``.
    3. Per env, ``R ← gamma · R + e`` (never reset at episode ends, as in Burda et al.: novelty is not episodic) and a
       running variance of ``R`` over all envs and steps is updated; ``r_int = e / sqrt(var(R) + 1e-8)``. Only the
       scale is normalised, so the bonus stays positive.
    4. ``s′`` joins a ring buffer of the last ``buffer_size`` next-observations; every ``train_freq`` calls of
       ``step()`` the predictor takes ``gradient_steps`` Adam steps on the mean of ``e`` over minibatches of
       ``batch_size`` drawn from it, normalised with the current statistics.

    The reward returned is ``r_ext + beta_t · r_int`` with ``beta_t = beta · max(0, 1 − t / beta_decay_steps)``
    (``t`` counts env steps seen by the wrapper, summed over envs; ``beta_decay_steps = 0`` keeps ``beta``).
    Each info gets ``info["extrinsic_reward"] = r_ext`` (the reward this wrapper received) and
    ``info["rnd_intrinsic"] = r_int`` (before ``beta_t``). ``beta`` and ``beta_decay_steps`` are settable attributes,
    checked like the constructor's arguments; reach the wrapper with
    ``stable_baselines3.common.vec_env.unwrap_vec_wrapper(env, RNDRewardWrapper)``, since ``VecEnv.set_attr`` forwards
    to the inner envs.

    Every numeric argument is checked (a ``ValueError`` names it and its allowed range): a zero size, a NaN weight
    or a non-positive clip would otherwise crash deep inside ``step()`` or silently feed NaN or a constant bonus to
    the learner.

    :param venv: the env; its observation space must be a ``Box``
    :param beta: weight of the intrinsic reward, finite and ``>= 0``; 0.5 is the paper's 1 : 2 weighting of
        intrinsic to extrinsic advantages, for extrinsic rewards of unit scale
    :param beta_decay_steps: env steps (an integer ``>= 0``) over which ``beta`` falls linearly to 0; 0 for no decay
    :param hidden_sizes: hidden layer widths (integers ``>= 1``) of the target and predictor MLPs
    :param embedding_dim: output size (``>= 1``) of the target and predictor
    :param learning_rate: predictor Adam learning rate, finite and ``> 0``
    :param train_freq: ``step()`` calls (``>= 1``) between predictor updates
    :param gradient_steps: Adam steps (``>= 1``) per update
    :param batch_size: minibatch size (``>= 1``)
    :param buffer_size: number (``>= 1``) of recent next-observations kept to train on
    :param gamma: discount in ``[0, 1]`` of the intrinsic return whose std normalises the bonus
    :param obs_clip: clip of the normalised observation, finite and ``> 0``
    :param seed: seed in ``[0, 2**32 - 1]`` of the networks' initialisation and of minibatch sampling (the global
        torch RNG is untouched)
    :param device: torch device of the networks
    """

    def __init__(
        self,
        venv: VecEnv,
        beta: float = 0.5,
        beta_decay_steps: int = 0,
        hidden_sizes: list[int] | None = None,
        embedding_dim: int = 32,
        learning_rate: float = 1e-3,
        train_freq: int = 1,
        gradient_steps: int = 1,
        batch_size: int = 128,
        buffer_size: int = 4096,
        gamma: float = 0.99,
        obs_clip: float = 5.0,
        seed: int | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(venv)
        if not isinstance(self.observation_space, spaces.Box):
            raise ValueError(f"RNDRewardWrapper needs a Box observation space, got {self.observation_space}")
        hidden_sizes = [64, 64] if hidden_sizes is None else hidden_sizes
        if not isinstance(hidden_sizes, (list, tuple)):
            raise ValueError(f"hidden_sizes must be a list of integers in [1, inf], got {hidden_sizes!r}")
        hidden_sizes = [checked_number(f"hidden_sizes[{i}]", width, 1, math.inf, integer=True) for i, width in enumerate(hidden_sizes)]
        embedding_dim, train_freq, gradient_steps, batch_size, buffer_size = (
            checked_number(name, value, 1, math.inf, integer=True)
            for name, value in (("embedding_dim", embedding_dim), ("train_freq", train_freq), ("gradient_steps", gradient_steps),
                                ("batch_size", batch_size), ("buffer_size", buffer_size))
        )  # fmt: skip
        learning_rate = checked_number("learning_rate", learning_rate, 0, math.inf, lo_open=True)
        gamma = checked_number("gamma", gamma, 0, 1)
        obs_clip = checked_number("obs_clip", obs_clip, 0, math.inf, lo_open=True)
        if seed is not None:
            seed = checked_number("seed", seed, 0, SEED_MAX, integer=True)
        self.beta = beta
        self.beta_decay_steps = beta_decay_steps
        self.train_freq = train_freq
        self.gradient_steps = gradient_steps
        self.batch_size = batch_size
        self.gamma = gamma
        self.obs_clip = obs_clip
        self.device = th.device(device)
        obs_dim = int(np.prod(self.observation_space.shape))
        with th.random.fork_rng(devices=[]):
            if seed is not None:
                th.manual_seed(seed)
            self.target = nn.Sequential(*create_mlp(obs_dim, embedding_dim, hidden_sizes, nn.ReLU)).to(self.device).requires_grad_(False)
            self.predictor = nn.Sequential(*create_mlp(obs_dim, embedding_dim, hidden_sizes, nn.ReLU)).to(self.device)
        self.optimizer = th.optim.Adam(self.predictor.parameters(), lr=learning_rate)
        self.obs_rms = RunningMeanStd(shape=(obs_dim,))
        self.return_rms = RunningMeanStd(shape=())
        self._intrinsic_return = np.zeros(self.num_envs)
        self._buffer = np.zeros((buffer_size, obs_dim), dtype=np.float32)
        self._buffer_pos = 0
        self._buffer_full = False
        self._rng = np.random.default_rng(seed)
        self.n_calls = 0
        self.num_timesteps = 0
        self.last_loss: float | None = None

    @property
    def beta(self) -> float:
        """Weight of the intrinsic reward before the decay."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = checked_number("beta", value, 0, math.inf)

    @property
    def beta_decay_steps(self) -> int:
        """Env steps over which ``beta`` falls to 0; 0 for no decay."""
        return self._beta_decay_steps

    @beta_decay_steps.setter
    def beta_decay_steps(self, value: int) -> None:
        self._beta_decay_steps = checked_number("beta_decay_steps", value, 0, math.inf, integer=True)

    @property
    def current_beta(self) -> float:
        """``beta`` after the linear decay."""
        if self.beta_decay_steps == 0:
            return self.beta
        return self.beta * max(0.0, 1.0 - self.num_timesteps / self.beta_decay_steps)

    def _normalize(self, obs: np.ndarray) -> th.Tensor:
        normalized = np.clip((obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8), -self.obs_clip, self.obs_clip)
        return th.as_tensor(normalized, dtype=th.float32, device=self.device)

    def _errors(self, x: th.Tensor) -> th.Tensor:
        return ((self.predictor(x) - self.target(x)) ** 2).sum(dim=1)

    def prediction_error(self, obs: np.ndarray) -> np.ndarray:
        """``‖f̂(x) − f(x)‖²`` of observations ``(n, *obs_shape)`` under the current statistics, without updating
        anything: the unnormalised bonus.

        :param obs: observations
        """
        with th.no_grad():
            return self._errors(self._normalize(obs.reshape(len(obs), -1))).cpu().numpy()

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        next_obs = np.array(obs, dtype=np.float32).reshape(self.num_envs, -1)
        for i, info in enumerate(infos):
            if dones[i] and info.get("terminal_observation") is not None:
                next_obs[i] = np.asarray(info["terminal_observation"]).reshape(-1)
        self.obs_rms.update(next_obs)
        errors = self.prediction_error(next_obs)
        self._intrinsic_return = self.gamma * self._intrinsic_return + errors
        self.return_rms.update(self._intrinsic_return)
        intrinsic = errors / np.sqrt(self.return_rms.var + 1e-8)
        self._store(next_obs)
        self.n_calls += 1
        self.num_timesteps += self.num_envs
        if self.n_calls % self.train_freq == 0:
            self._train()
        for info, extrinsic, bonus in zip(infos, rewards, intrinsic):
            info["extrinsic_reward"] = float(extrinsic)
            info["rnd_intrinsic"] = float(bonus)
        return obs, (rewards + self.current_beta * intrinsic).astype(np.float32), dones, infos

    def _store(self, next_obs: np.ndarray) -> None:
        size = len(self._buffer)
        idx = (self._buffer_pos + np.arange(len(next_obs))) % size
        self._buffer[idx] = next_obs
        self._buffer_full = self._buffer_full or self._buffer_pos + len(next_obs) >= size
        self._buffer_pos = int((self._buffer_pos + len(next_obs)) % size)

    def _train(self) -> None:
        n_stored = len(self._buffer) if self._buffer_full else self._buffer_pos
        for _ in range(self.gradient_steps):
            batch = self._buffer[self._rng.integers(n_stored, size=min(self.batch_size, n_stored))]
            loss = self._errors(self._normalize(batch)).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.last_loss = loss.item()

    def save(self, path: str | Path) -> None:
        """Save the target and predictor networks, the optimizer, the normalisation statistics and the step count
        (not the observation buffer) with ``torch.save``.

        :param path: file to write
        """
        th.save(
            {
                "target": self.target.state_dict(),
                "predictor": self.predictor.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "obs_mean": th.as_tensor(self.obs_rms.mean),
                "obs_var": th.as_tensor(self.obs_rms.var),
                "obs_count": self.obs_rms.count,
                "return_mean": th.as_tensor(self.return_rms.mean),
                "return_var": th.as_tensor(self.return_rms.var),
                "return_count": self.return_rms.count,
                "intrinsic_return": th.as_tensor(self._intrinsic_return),
                "n_calls": self.n_calls,
                "num_timesteps": self.num_timesteps,
            },
            path,
        )

    def load(self, path: str | Path) -> None:
        """Restore what :meth:`save` wrote into this wrapper, which must have the same network sizes and number of
        envs. The file is read with ``weights_only=True`` (no code runs) and every entry is checked before any is set.

        :param path: file written by :meth:`save`
        :raises ValueError: naming the file, for one that is not such a file or does not fit this wrapper
        """
        try:
            state = th.load(path, map_location=self.device, weights_only=True)
        except Exception as err:  # torch raises many kinds on a damaged or foreign file
            raise ValueError(f"{path} is not an RNDRewardWrapper file: {str(err)[:200]}") from None
        obs_dim, n_envs = self.obs_rms.mean.shape, (self.num_envs,)
        shapes = {"obs_mean": obs_dim, "obs_var": obs_dim, "return_mean": (), "return_var": (), "intrinsic_return": n_envs}
        try:
            arrays = {key: state[key].cpu().numpy().astype(np.float64) for key in shapes}
            for key, shape in shapes.items():
                if arrays[key].shape != shape or not np.isfinite(arrays[key]).all():
                    raise ValueError(f"{key} must be finite of shape {shape} (this wrapper's), got shape {arrays[key].shape}")
            counts = {key: checked_number(key, state[key], 0, math.inf) for key in ("obs_count", "return_count")}
            steps = {key: checked_number(key, state[key], 0, math.inf, integer=True) for key in ("n_calls", "num_timesteps")}
            target, predictor = self._checked_weights(self.target, state["target"]), self._checked_weights(self.predictor, state["predictor"])
            self.optimizer.load_state_dict(state["optimizer"])  # last of the checks: it refuses before setting anything
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
            raise ValueError(f"{path} does not fit this RNDRewardWrapper: {str(err)[:300]}") from None
        self.target.load_state_dict(target)
        self.predictor.load_state_dict(predictor)
        self.obs_rms.mean, self.obs_rms.var, self.obs_rms.count = arrays["obs_mean"], arrays["obs_var"], counts["obs_count"]
        self.return_rms.mean, self.return_rms.var, self.return_rms.count = arrays["return_mean"], arrays["return_var"], counts["return_count"]
        self._intrinsic_return = arrays["intrinsic_return"]
        self.n_calls, self.num_timesteps = steps["n_calls"], steps["num_timesteps"]

    @staticmethod
    def _checked_weights(network: nn.Module, weights: dict[str, th.Tensor]) -> dict[str, th.Tensor]:
        """``weights`` if they are ``network``'s entries with its shapes, finite."""
        own = network.state_dict()
        if not isinstance(weights, dict) or set(weights) != set(own):
            raise ValueError(f"the network's entries must be {sorted(own)}")
        for key, value in weights.items():
            if not isinstance(value, th.Tensor) or value.shape != own[key].shape or not th.isfinite(value).all():
                raise ValueError(f"{key} must be a finite tensor of shape {tuple(own[key].shape)}")
        return weights
