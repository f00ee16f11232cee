"""Reptile (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms") around SB3's PPO.

The tasks are the sites of a :class:`~sb3_microgrid.envs.multi_site.MultiSiteVecEnv` (any other env is one site).
Each outer update draws ``meta_batch_size`` sites and, from the current weights θ, runs on each an inner loop of
``inner_updates`` ordinary PPO updates (a rollout of ``n_steps`` per microgrid of that site, then PPO's
``train()``), giving θ_i. The outer update is θ ← θ + ε (mean_i θ_i − θ), ε the meta step size (a float or a
schedule of the progress remaining, e.g. the paper's linear anneal to 0, read when the outer update starts). The
result is an ordinary actor-critic: ``Reptile.load`` continues meta-training, ``PPO.load`` (or
``sb3-microgrid adapt``) fine-tunes it on one site.

Design decisions (docs/meta_learning.md):

- **Normalisation.** With a ``VecNormalize`` around the env, each site gets a ``VecNormalize`` of the same settings
  that persists across visits. Its *reward* statistics are the site's own (kept in :attr:`Reptile.site_return_rms`,
  saved in the zip): sites' returns differ in scale and variance, and PPO's loss should not be scaled by another
  site's. Its *observation* statistics are shared by all sites and are those of the env's own ``VecNormalize``,
  which is what ``model.get_vec_normalize_env().save(...)`` writes: a policy applied to a new site must see its
  inputs normalised as in training, and a held-out site has no statistics of its own yet; the site context in
  the observation, not the normaliser, tells sites apart. A site's episodes continue where its last visit left
  them, its last observation normalised again with the statistics of the moment. After each outer update the
  env's reward statistics become the combination of the sites' (what fine-tuning starts from).
- **Optimizer state is reset** (Adam's moments and step count cleared) at the start of every inner loop and after
  every outer update. The moments at the end of an inner loop describe one site's gradients at θ_i; carried into
  the next site's loop they would push its first steps in the previous site's direction, and averaged over the
  batch they are not the moments of θ. Each inner loop is thus a function of (θ, site, data) alone, and a saved
  model holds no site's moments: fine-tuning starts from a fresh optimizer, as every inner loop did.
- **Callbacks** see one rollout per outer update: ``on_rollout_start`` with θ (so checkpoints and validation
  scores are of the meta-weights, never of a site's θ_i), ``on_step`` at every env step of the inner loops (with
  the site env's ``locals``; ``get_vec_normalize_env()`` is the site's normaliser meanwhile), ``on_rollout_end``
  after the outer update. A callback that stops training stops it mid-iteration and θ is restored (with no
  optimizer moments). A callback's ``n_calls`` counts inner steps of one site's microgrids, not of the whole env,
  and SB3's callbacks that act in ``on_step`` (``EvalCallback``, ``CheckpointCallback``) see a site's θ_i: the
  package's ``ValidationCallback`` and ``CheckpointSetCallback`` act at rollout start, on θ. Callbacks that act
  between a rollout's collection and its update (``ParameterNoiseCallback``, ``KLMonitorCallback``,
  ``AuxiliaryValueReplayCallback``) refuse Reptile (:func:`refuse_reptile`): here that span holds every site's inner
  updates, which would train perturbed weights, measure the KL of no update, or pile up every site's steps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, ConvertCallback, ProgressBarCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor, VecNormalize
from torch.nn.utils import parameters_to_vector

from ..envs.multi_site import MultiSiteVecEnv
from ..sites import check_not_held_out
from .policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfReptile = TypeVar("SelfReptile", bound="Reptile")


def site_envs(env: VecEnv) -> list[VecEnv]:
    """The sites Reptile adapts to: those of a :class:`MultiSiteVecEnv`, else ``env``'s base VecEnv as one site.

    :param env: the training env; between it and its base only ``VecMonitor`` and ``VecNormalize``, which Reptile
        rebuilds for each site
    :raises ValueError: for any other ``VecEnvWrapper``
    """
    base = env
    while isinstance(base, VecEnvWrapper):
        if not isinstance(base, (VecMonitor, VecNormalize)):
            raise ValueError(f"Reptile rebuilds VecMonitor and VecNormalize for each site; it cannot keep {type(base).__name__}")
        base = base.venv
    return list(base.site_envs) if isinstance(base, MultiSiteVecEnv) else [base]


def _check_meta_step_size(value: float, progress_remaining: float) -> float:
    """``value``, a meta step size a schedule returned, if it is in [0, 1].

    :raises ValueError: naming ``meta_step_size``, the value, the progress remaining and the range
    """
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"meta_step_size schedule returned {value!r} at progress remaining {progress_remaining:.3g}; it must return values in [0, 1]")
    return value


def load_vector(parameters: list[th.nn.Parameter], vector: th.Tensor) -> None:
    """Copy ``vector`` into ``parameters`` (torch's ``vector_to_parameters`` makes them views of it, so training
    would change ``vector`` too)."""
    with th.no_grad():
        for parameter, values in zip(parameters, vector.split([p.numel() for p in parameters])):
            parameter.copy_(values.view_as(parameter))


@dataclass
class _Site:
    """A site's env as the inner loops step it, and where its episodes stand between visits."""

    name: str
    env: VecEnv
    last_obs: np.ndarray | None = None
    last_episode_starts: np.ndarray | None = None


def refuse_reptile(model: BaseAlgorithm, callback: str) -> None:
    """Refuse a callback that acts between a rollout's collection and its update on a :class:`Reptile` model (module
    docstring, "Callbacks").

    :raises TypeError: naming the callback, if ``model`` is a ``Reptile``
    """
    if isinstance(model, Reptile):
        raise TypeError(
            f"{callback} cannot run under Reptile: its rollout (from on_rollout_start to on_rollout_end) spans every "
            "site's inner PPO updates, where the callback expects one update after it (docs/meta_learning.md)"
        )


class _InnerLoopCallback(BaseCallback):
    """Passes the inner loops' steps to the user's callback; its rollout events are the outer update's (``learn``)."""

    def __init__(self, outer: BaseCallback) -> None:
        super().__init__()
        self.outer = outer

    def update_locals(self, locals_: dict[str, Any]) -> None:
        self.outer.update_locals(locals_)

    def _on_step(self) -> bool:
        return self.outer.on_step()


class _ProgressBar(ProgressBarCallback):
    """SB3's progress bar, advanced by the env steps actually taken: an inner step is one site's microgrids, not
    the ``num_envs`` of the whole multi-site env that SB3's bar adds at every step."""

    def _on_step(self) -> bool:
        self.pbar.update(self.model.num_timesteps - self._start - self.pbar.n)
        return True

    def _on_training_start(self) -> None:
        super()._on_training_start()
        self._start = self.model.num_timesteps


class Reptile(PPO):
    """First-order meta-learning of PPO's initial weights over sites (module docstring).

    Takes PPO's arguments, ``env`` being the training sites (a :class:`MultiSiteVecEnv`, optionally in ``VecMonitor``
    and ``VecNormalize``). ``n_steps`` and ``batch_size`` are per inner PPO update of one site, whose
    ``n_envs_per_site`` microgrids fill the rollout buffer. The held-out sites of :mod:`sb3_microgrid.sites` are
    refused when training starts.

    :param policy: ``"MlpPolicy"`` (PPO's actor-critic), ``"CnnPolicy"``, ``"MultiInputPolicy"`` or a policy class
    :param env: the training sites; any other VecEnv is one site (module docstring)
    :param inner_updates: PPO updates per site visit (k), an integer >= 1
    :param meta_batch_size: sites per outer update, drawn without replacement (their inner solutions are averaged),
        an integer in [1, number of sites]
    :param meta_step_size: ε in (0, 1], or a schedule of the progress remaining (1 at the start, 0 at the end)
        returning values in [0, 1]; evaluated at the progress remaining when each outer update starts, so a
        linear anneal from ε₀ to 0 gives update i (from 0) of N the step ε₀ (1 - i/N), as the paper's code does
    :param kwargs: PPO's arguments (``n_steps`` and ``batch_size`` per inner update of one site)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy, "MultiInputPolicy": MultiInputPolicy}

    def __init__(
        self,
        policy: str | type[BasePolicy],
        env: VecEnv | str | None,
        inner_updates: int = 4,
        meta_batch_size: int = 1,
        meta_step_size: float | Schedule = 0.5,
        **kwargs: Any,
    ) -> None:
        for name, value in (("inner_updates", inner_updates), ("meta_batch_size", meta_batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if callable(meta_step_size):
            _check_meta_step_size(meta_step_size(1.0), 1.0)
        elif isinstance(meta_step_size, bool) or not (isinstance(meta_step_size, (int, float)) and 0 < meta_step_size <= 1):
            raise ValueError(f"meta_step_size must be a number in (0, 1] or a schedule, got {meta_step_size!r}")
        self.inner_updates = inner_updates
        self.meta_batch_size = meta_batch_size
        self.meta_step_size = meta_step_size
        #: reward statistics of each site visited, by site name (module docstring, "Normalisation")
        self.site_return_rms: dict[str, RunningMeanStd] = {}
        self._n_meta_updates = 0
        self._sites: list[_Site] | None = None
        super().__init__(policy, env, **kwargs)
        if self.env is not None and kwargs.get("_init_setup_model", True):  # a new model, not one being loaded
            sites = len(site_envs(self.env))
            if meta_batch_size > sites:
                raise ValueError(f"meta_batch_size must be an integer in [1, {sites}] (the sites of the env), got {meta_batch_size}")
            # PPO's own check counts the microgrids of every site, but an inner update fills the buffer with one site's.
            buffer_size = self.n_steps * site_envs(self.env)[0].num_envs
            if buffer_size % self.batch_size and not (self.n_steps * self.env.num_envs) % self.batch_size:
                warnings.warn(
                    f"batch_size {self.batch_size} does not divide the rollout buffer of one site (n_steps x microgrids per "
                    f"site = {buffer_size}): every inner update ends with a truncated mini-batch of {buffer_size % self.batch_size}",
                    stacklevel=2,
                )

    def _setup_model(self) -> None:
        if self.env is not None:
            self.envs_per_site = site_envs(self.env)[0].num_envs
        # PPO's rollout buffer holds one site's microgrids: the inner loops run on one site at a time.
        n_envs, self.n_envs = self.n_envs, self.envs_per_site
        super()._setup_model()
        self.n_envs = n_envs
        self.meta_step_size_schedule = FloatSchedule(self.meta_step_size)

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        """As PPO's; the env must have as many microgrids per site as the model's rollout buffer holds.

        :param env: the new training sites
        :param force_reset: start new episodes at the next ``learn``
        :raises ValueError: if the microgrids per site differ (the model keeps its env)
        """
        env = self._wrap_env(env, self.verbose)
        per_site = site_envs(env)[0].num_envs
        if per_site != self.envs_per_site:
            raise ValueError(f"this model's rollout buffer holds {self.envs_per_site} microgrids per site, the env has {per_site}; use Reptile.load(path, env)")
        super().set_env(env, force_reset)
        self._sites = None

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_sites"]

    # ---- sites --------------------------------------------------------------------------------
    def _build_sites(self) -> list[_Site]:
        """Each site's env with its own monitor and normaliser (refusing held-out sites)."""
        envs = site_envs(self.env)
        scenarios = [env.get_attr("scenario", [0])[0] for env in envs]
        check_not_held_out(scenarios)
        if self.meta_batch_size > len(envs):
            raise ValueError(f"meta_batch_size must be an integer in [1, {len(envs)}] (the sites of the env), got {self.meta_batch_size}")
        outer = self._vec_normalize_env
        sites = []
        for env, scenario in zip(envs, scenarios):
            venv = env if env.env_is_wrapped(Monitor)[0] else VecMonitor(env)
            if outer is not None:
                venv = VecNormalize(
                    venv, training=outer.training, norm_obs=outer.norm_obs, norm_reward=outer.norm_reward, clip_obs=outer.clip_obs,
                    clip_reward=outer.clip_reward, gamma=outer.gamma, epsilon=outer.epsilon, norm_obs_keys=outer.norm_obs_keys,
                )  # fmt: skip
            sites.append(_Site(scenario.name, venv))
        return sites

    def _enter(self, site: _Site) -> None:
        """Make ``site`` the env the rollouts collect from, with its episodes where its last visit left them."""
        outer = self._vec_normalize_env
        if isinstance(site.env, VecNormalize):
            # linked at every visit, so statistics put back into the env's normaliser (ValidationCallback) are the ones used
            site.env.obs_rms = outer.obs_rms
            site.env.ret_rms = self.site_return_rms.setdefault(site.name, RunningMeanStd())
        if site.last_obs is None:
            site.last_obs, site.last_episode_starts = site.env.reset(), np.ones(site.env.num_envs, dtype=bool)
        elif isinstance(site.env, VecNormalize):
            # Other sites have moved the shared observation statistics since this site's last step: its last
            # observation is normalised again, as its next ones will be, rather than kept as it was then.
            site.last_obs = site.env.normalize_obs(site.env.get_original_obs())
        self._last_obs, self._last_episode_starts = site.last_obs, site.last_episode_starts
        self._vec_normalize_env = site.env if isinstance(site.env, VecNormalize) else None

    def _leave(self, site: _Site, outer: VecNormalize | None) -> None:
        """Keep where ``site``'s episodes stand and make ``outer`` the model's normaliser again."""
        site.last_obs, site.last_episode_starts = self._last_obs, self._last_episode_starts
        self._vec_normalize_env = outer

    # ---- training -----------------------------------------------------------------------------
    def _inner_loop(self, theta: th.Tensor, site: _Site, callback: BaseCallback) -> th.Tensor | None:
        """``inner_updates`` PPO updates on ``site`` from ``theta``: the weights reached, ``None`` if a callback stopped."""
        load_vector(list(self.policy.parameters()), theta)
        self.policy.optimizer.state.clear()  # fresh moments for every site (module docstring)
        outer = self._vec_normalize_env
        self._enter(site)
        try:
            for _ in range(self.inner_updates):
                if not self.collect_rollouts(site.env, callback, self.rollout_buffer, n_rollout_steps=self.n_steps):
                    return None
                self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
                self.train()
        finally:
            self._leave(site, outer)
        return parameters_to_vector(self.policy.parameters()).detach().clone()

    def _meta_update(self, callback: BaseCallback) -> bool:
        """One outer update over ``meta_batch_size`` sites; ``False`` (θ unchanged) if a callback stopped training."""
        assert self._sites is not None
        parameters = list(self.policy.parameters())
        theta = parameters_to_vector(parameters).detach().clone()
        # The draw depends on the seed and the update count only, so a loaded model continues the same sequence.
        rng = np.random.default_rng(None if self.seed is None else [self.seed, self._n_meta_updates])
        chosen = [self._sites[i] for i in rng.choice(len(self._sites), size=self.meta_batch_size, replace=False)]
        # ε at the progress remaining when the update starts (always > 0): the last update of a linear anneal gets
        # ε/N rather than 0, which would discard its inner loops, and an overshoot never turns ε negative.
        progress = 1.0 - self.num_timesteps / self._total_timesteps
        epsilon = _check_meta_step_size(self.meta_step_size_schedule(progress), progress)
        solutions = []
        for site in chosen:
            solution = self._inner_loop(theta, site, callback)
            if solution is None:
                load_vector(parameters, theta)
                self.policy.optimizer.state.clear()  # nor does a stopped model keep the site's moments
                return False
            solutions.append(solution)
        inner = th.stack(solutions)
        load_vector(parameters, theta + epsilon * (inner.mean(dim=0) - theta))
        self.policy.optimizer.state.clear()  # the last site's moments are not θ's
        self._n_meta_updates += 1
        outer = self._vec_normalize_env
        if outer is not None:
            combined = RunningMeanStd()
            for rms in self.site_return_rms.values():
                combined.combine(rms)
            outer.ret_rms = combined
        self.logger.record("reptile/meta_updates", self._n_meta_updates)
        self.logger.record("reptile/meta_step_size", epsilon)
        self.logger.record("reptile/inner_distance", float((inner - theta).norm(dim=1).mean()))
        return True

    def learn(
        self: SelfReptile,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "Reptile",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfReptile:
        """Outer updates until ``total_timesteps`` env steps (summed over sites) are done.

        Training is in whole outer updates, as PPO's is in whole rollouts: the last one may take the run past
        ``total_timesteps`` by less than one outer update (``meta_batch_size x inner_updates x n_steps x`` microgrids
        per site steps); ``num_timesteps`` has the count. Callbacks: ``on_rollout_start`` / ``on_rollout_end`` once
        per outer update (θ), ``on_step`` at every inner step, each of one site's microgrids (module docstring).

        :param total_timesteps: env steps to train for (added to ``num_timesteps`` if ``reset_num_timesteps`` is False)
        :param callback: callback(s), as for PPO
        :param log_interval: outer updates between log dumps (counted over the model's life, as ``reptile/meta_updates``)
        :param tb_log_name: name of the TensorBoard run
        :param reset_num_timesteps: start the step count, the episodes and the site envs afresh; ``False`` continues them
        :param progress_bar: show a progress bar of the env steps (tqdm and rich)
        :return: the model
        """
        if reset_num_timesteps or self._last_obs is None or self._sites is None:
            # _setup_learn resets the env, hence every site's episodes: start each site afresh (and refuse held-out ones)
            self._sites = self._build_sites()
        if progress_bar:  # SB3's bar would add the whole env's microgrids at each inner step of one site
            listed = callback if isinstance(callback, list) else [] if callback is None else [callback]
            callback = [c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in listed] + [_ProgressBar()]
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, False)
        callback.on_training_start(locals(), globals())
        inner_callback = _InnerLoopCallback(callback)
        inner_callback.init_callback(self)
        while self.num_timesteps < total_timesteps:
            callback.on_rollout_start()
            if not self._meta_update(inner_callback):
                break
            callback.on_rollout_end()
            if log_interval is not None and self._n_meta_updates % log_interval == 0:
                self.dump_logs(self._n_meta_updates)
        callback.on_training_end()
        return self
