"""``MultiSiteVecEnv``: microgrids of several sites in one SB3 ``VecEnv``, for one policy trained across sites.

Each site is a :class:`~sb3_microgrid.envs.vec_env.MicrogridVecEnv` of ``n_envs_per_site`` microgrids; the
VecEnv concatenates them, site by site (microgrid ``i`` is microgrid ``i % n_envs_per_site`` of site
``i // n_envs_per_site``). One policy can act on all of them only if every site has the same observation and
action: the per-port EV interface and the site's own sizes make them differ, ``ev.dispatch: aggregate`` and
``observation.site_context: true`` make them equal (docs/environment.md, sections 3 and 4).

Which sites may be trained on is not decided here (envs is below :mod:`sb3_microgrid.sites`): training code
checks its scenarios with :func:`sb3_microgrid.sites.check_not_held_out`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from ..scenario import Scenario
from .vec_env import MicrogridVecEnv, check_options


class SiteInterfaceError(ValueError):
    """Sites whose observations or actions differ cannot share one policy."""


class MultiSiteVecEnv(VecEnv):
    """Several sites' microgrids stepped as one VecEnv.

    The microgrids of one site end and reset together; sites whose episodes differ in length (``horizon_days``,
    time step) end at different steps, each resetting on its own. Seeds, reset options, ``get_attr``,
    ``env_method``, infos and ``reset_infos`` (refreshed at every automatic reset, as SB3's ``DummyVecEnv`` does)
    are those of the site each microgrid belongs to.

    :param scenarios: the sites (preset names, YAML paths, mappings or scenarios), each once
    :param n_envs_per_site: microgrids of each site
    :param split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"``, the same for every site
    :param seed: seeds ``seed + i`` for microgrid ``i`` at the first reset (as ``VecEnv.seed``)
    :param step_infos: as for :class:`MicrogridVecEnv`
    :raises SiteInterfaceError: if two sites differ in observation layout or action space, naming them and the sizes
    """

    def __init__(
        self,
        scenarios: Sequence[str | Scenario | dict],
        n_envs_per_site: int = 1,
        split: str = "train",
        seed: int | None = None,
        step_infos: bool = True,
    ) -> None:
        if isinstance(scenarios, (str, PurePath, Scenario, dict)):  # one site, whose characters or keys are no sites
            raise TypeError(f"scenarios must be a list of sites (preset names, YAML paths, mappings or scenarios), got one {type(scenarios).__name__}")
        scenarios = list(scenarios)
        if len(scenarios) == 0:
            raise ValueError("MultiSiteVecEnv needs at least one site")
        if isinstance(n_envs_per_site, bool) or not isinstance(n_envs_per_site, (int, np.integer)) or n_envs_per_site < 1:
            raise ValueError(f"n_envs_per_site must be an integer >= 1, got {n_envs_per_site!r}")
        n_envs_per_site = int(n_envs_per_site)
        self.site_envs = [MicrogridVecEnv(n_envs_per_site, scenario=s, split=split, step_infos=step_infos) for s in scenarios]
        self.scenarios = [env.scenario for env in self.site_envs]
        names = [s.name for s in self.scenarios]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"each site once: {repeated} given more than once")
        _check_same_interface(self.site_envs)
        self.n_envs_per_site = n_envs_per_site
        #: each site's microgrids among the VecEnv's
        self._parts = [slice(i * n_envs_per_site, (i + 1) * n_envs_per_site) for i in range(len(self.site_envs))]
        self.obs_layout = self.site_envs[0].obs_layout
        self.render_mode = None
        self._actions: np.ndarray | None = None
        first = self.site_envs[0]
        super().__init__(len(self.site_envs) * n_envs_per_site, first.observation_space, first.action_space)
        if seed is not None:
            self.seed(seed)

    def _locate(self, indices: VecEnvIndices) -> list[tuple[MicrogridVecEnv, int]]:
        """The site env and the index within it of each microgrid of ``indices``."""
        k = self.n_envs_per_site
        return [(self.site_envs[i // k], i % k) for i in self._get_indices(indices)]

    # ---- VecEnv API ---------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        try:
            # every site's days checked before any site resets: a bad one leaves all of them as they were
            for env, part in zip(self.site_envs, self._parts):
                env.requested_days(self._options[part])
            for env, part in zip(self.site_envs, self._parts):
                env._seeds, env._options = self._seeds[part], self._options[part]
            obs = np.concatenate([env.reset() for env in self.site_envs])
        finally:
            self._reset_seeds()
            self._reset_options()
        self.reset_infos = [info for env in self.site_envs for info in env.reset_infos]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        # checked whole before any site steps: a site's own check would leave the sites before it a step ahead
        expected = (self.num_envs, *self.action_space.shape)
        try:
            actions = np.asarray(actions)
        except ValueError as err:  # a ragged list
            raise ValueError(f"actions must have shape {expected}: {err}") from None
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected}, got shape {actions.shape}")
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        results = [env.step(self._actions[part]) for env, part in zip(self.site_envs, self._parts)]
        obs, rewards, dones, infos = zip(*results)
        done = np.concatenate(dones)
        if done.any():  # the sites that ended were reset: their new episodes' infos
            self.reset_infos = [info for env in self.site_envs for info in env.reset_infos]
        return np.concatenate(obs), np.concatenate(rewards), done, [info for site in infos for info in site]

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        """Options for the next reset: one dict for every microgrid, or a list of one per microgrid.

        :param options: e.g. ``{"day": "2016-03-01"}``
        :raises ValueError: for a list whose length is not ``num_envs``
        """
        check_options(options, self.num_envs)
        super().set_options(options)

    def close(self) -> None:
        for env in self.site_envs:
            env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [env.get_attr(attr_name, [i])[0] for env, i in self._locate(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for env, i in self._locate(indices):
            env.set_attr(attr_name, value, [i])

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        return [env.env_method(method_name, *method_args, indices=[i], **method_kwargs)[0] for env, i in self._locate(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [env.env_is_wrapped(wrapper_class, [i])[0] for env, i in self._locate(indices)]


def _check_same_interface(envs: list[MicrogridVecEnv]) -> None:
    """Raise :class:`SiteInterfaceError` unless every site has the first site's observation layout and action space."""
    first = envs[0]
    differ = [env for env in envs if env.obs_layout != first.obs_layout or env.action_space != first.action_space]
    if differ:
        sizes = "; ".join(
            f"{env.scenario.name!r}: observation {env.observation_space.shape[0]}, action {env.action_space.shape[0]}"
            for env in [first, *differ]
        )
        raise SiteInterfaceError(
            f"one policy needs the same observation and action on every site, but {sizes} (site contexts or EV ports "
            "differ); give every site ev.dispatch: aggregate and observation.site_context: true"
        )
