"""Train from a zoo-format YAML file, with checkpoints that an interrupted run resumes from.

Files written under ``run_dir``:
``checkpoints/model_<steps>_steps.zip`` (+ ``model_vecnormalize_<steps>_steps.pkl`` and, for
off-policy algorithms, ``model_replay_buffer_<steps>_steps.pkl``: SB3's own ``CheckpointCallback``),
``model.zip`` and ``model_vecnormalize.pkl`` at the end (the names ``SB3Controller`` and
``sb3-microgrid evaluate`` look for), ``config.yml`` (a copy of the hyperparameter file) and ``tb/``
(TensorBoard).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecMonitor, VecNormalize

from .dyna import DynaSAC
from .envs import MicrogridVecEnv
from .hyperparams import Hyperparams, HyperparamsError, load_hyperparams
from .per_sac import PerSAC
from .per_td3 import PerTD3
from .twin_ppo import TwinValuePPO

#: Algorithms known to the command line and the zoo launcher.
ALGOS: dict[str, type[BaseAlgorithm]] = {
    "a2c": A2C,
    "ddpg": DDPG,
    "ppo": PPO,
    "sac": SAC,
    "td3": TD3,
    "twin_ppo": TwinValuePPO,
    "dyna_sac": DynaSAC,
    "per_sac": PerSAC,
    "per_td3": PerTD3,
}
VEC_ENVS = ("microgrid", "dummy", "subproc")
_CHECKPOINT = re.compile(r"model_(\d+)_steps\.zip$")


def algorithm(name: str) -> type[BaseAlgorithm]:
    """The algorithm class registered under ``name``."""
    if name not in ALGOS:
        raise HyperparamsError(f"unknown algorithm {name!r}; allowed: {sorted(ALGOS)}")
    return ALGOS[name]


def make_env(hp: Hyperparams, seed: int, vec_env: str = "microgrid") -> VecEnv:
    """The training env of a hyperparameter section: ``MicrogridVecEnv`` for ``Microgrid-v0`` by
    default (one vectorized core), else SB3's ``DummyVecEnv``/``SubprocVecEnv`` of ``gym.make``."""
    if vec_env not in VEC_ENVS:
        raise HyperparamsError(f"unknown vec_env {vec_env!r}; allowed: {list(VEC_ENVS)}")
    if vec_env == "microgrid" and hp.env_id == "Microgrid-v0" and not hp.env_wrappers:
        env: VecEnv = VecMonitor(MicrogridVecEnv(hp.n_envs, seed=seed, **hp.env_kwargs))
    else:
        env = make_vec_env(
            hp.env_id,
            n_envs=hp.n_envs,
            seed=seed,
            env_kwargs=hp.env_kwargs,
            vec_env_cls=SubprocVecEnv if vec_env == "subproc" else DummyVecEnv,
            wrapper_class=_chain(hp.env_wrappers),
        )
    for cls, kwargs in hp.vec_env_wrappers:
        env = cls(env, **kwargs)
    if hp.normalize is not None:
        env = VecNormalize(env, **hp.normalize)
    return env


def _chain(wrappers: list[tuple[Any, dict[str, Any]]]) -> Any:
    if not wrappers:
        return None

    def wrap(env: Any) -> Any:
        for cls, kwargs in wrappers:
            env = cls(env, **kwargs)
        return env

    return wrap


def last_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """The newest ``(steps, path)`` checkpoint of a run, if any."""
    found = [(int(m.group(1)), p) for p in (run_dir / "checkpoints").glob("model_*_steps.zip") if (m := _CHECKPOINT.search(p.name))]
    return max(found) if found else None


def build_model(cls: type[BaseAlgorithm], hp: Hyperparams, env: VecEnv, seed: int, **kwargs: Any) -> BaseAlgorithm:
    """A new model of ``cls`` with the file's settings (and its action noise) on ``env``, on the CPU.

    :param kwargs: further constructor arguments (``tensorboard_log``, ``verbose``, ...)
    """
    algo_kwargs = {**hp.algo_kwargs, **kwargs}
    if hp.noise is not None:
        kind, std = hp.noise
        n = env.action_space.shape[0]
        noise_cls = NormalActionNoise if kind == "normal" else OrnsteinUhlenbeckActionNoise
        algo_kwargs["action_noise"] = noise_cls(mean=np.zeros(n), sigma=std * np.ones(n))
    return cls(hp.policy, env, seed=seed, device="cpu", **algo_kwargs)


def train(
    algo: str,
    conf: str | Path,
    run_dir: str | Path,
    timesteps: int | None = None,
    seed: int = 0,
    resume: bool = False,
    save_freq: int = 50_000,
    vec_env: str = "microgrid",
    env_id: str | None = None,
    progress_bar: bool = True,
    verbose: int = 0,
) -> BaseAlgorithm:
    """Train ``algo`` with the settings of a zoo-format YAML file.

    :param algo: a name of :data:`ALGOS`
    :param conf: the YAML file (rl-baselines3-zoo format)
    :param run_dir: where checkpoints, the final model and TensorBoard logs go
    :param timesteps: total steps (default: the file's ``n_timesteps``)
    :param seed: seed of the envs and the algorithm
    :param resume: continue from the newest checkpoint in ``run_dir`` (its model, normalisation
        statistics and replay buffer), up to the same total
    :param save_freq: steps between checkpoints (summed over envs)
    :param vec_env: ``microgrid`` (the vectorized core), ``dummy`` or ``subproc``
    :param env_id: the YAML section to read (default: its only one)
    :param progress_bar: show SB3's progress bar
    :param verbose: SB3 verbosity
    """
    torch.set_num_threads(1)  # small networks on few cores: one thread is several times faster
    cls = algorithm(algo)
    hp = load_hyperparams(conf, cls, env_id)
    total = int(timesteps if timesteps is not None else hp.n_timesteps)
    if total <= 0:
        raise HyperparamsError(f"{conf}: n_timesteps must be > 0 (or pass timesteps)")
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(conf, run_dir / "config.yml")
    env = make_env(hp, seed, vec_env)
    previous = last_checkpoint(run_dir) if resume else None
    if resume and previous is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
    if previous is not None:
        steps, path = previous
        stem = path.with_name(f"model_vecnormalize_{steps}_steps.pkl")
        if isinstance(env, VecNormalize) and stem.exists():
            env = VecNormalize.load(str(stem), env.venv)
        model = cls.load(path, env=env, device="cpu", tensorboard_log=str(run_dir / "tb"))
        buffer = path.with_name(f"model_replay_buffer_{steps}_steps.pkl")
        if isinstance(model, OffPolicyAlgorithm) and buffer.exists():
            model.load_replay_buffer(buffer)
    else:
        model = build_model(cls, hp, env, seed, tensorboard_log=str(run_dir / "tb"), verbose=verbose)
    callbacks: list[BaseCallback] = [cls_(**kwargs) for cls_, kwargs in hp.callbacks]
    callbacks.append(
        CheckpointCallback(
            save_freq=max(save_freq // env.num_envs, 1),
            save_path=str(run_dir / "checkpoints"),
            name_prefix="model",
            save_replay_buffer=isinstance(model, OffPolicyAlgorithm),
            save_vecnormalize=True,
        )
    )
    remaining = total - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), progress_bar=progress_bar, reset_num_timesteps=previous is None, tb_log_name=algo)
    model.save(run_dir / "model.zip")
    if isinstance(env, VecNormalize):
        env.save(str(run_dir / "model_vecnormalize.pkl"))
    return model
