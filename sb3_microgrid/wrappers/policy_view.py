"""A policy trained on a wrapper, seen from both sides: the agent's stand-in while it trains, and the env's view
matching its inputs when it is scored as a controller of the plain env."""

from __future__ import annotations

import gymnasium as gym

from ..envs import MicrogridEnv, ObservationLayout
from ..envs.microgrid_env import observation_space


def require_plain_microgrid(env: gym.Env, wrapper: str) -> None:
    """Refuse to wrap anything but ``Microgrid-v0`` with its own spaces: a wrapper built on a baseline controller
    reads the env's own observation layout and sends the env its action unchanged.

    :raises TypeError: naming ``wrapper`` and what is wrong
    """
    # MicrogridGoal-v0 is a MicrogridEnv whose observation is a dict, which no baseline controller reads
    if not isinstance(env.unwrapped, MicrogridEnv) or not isinstance(env.unwrapped.observation_space, gym.spaces.Box):
        raise TypeError(f"{wrapper} needs a Microgrid-v0 env (a flat Box observation), got {type(env.unwrapped).__name__} observing {env.unwrapped.observation_space}")
    if env.observation_space != env.unwrapped.observation_space or env.action_space != env.unwrapped.action_space:
        raise TypeError(f"{wrapper} must wrap Microgrid-v0 with its own observation and action spaces; put wrappers that change them outside it")


def require_dispatch(env: gym.Env, controller: object, wrapper: str) -> None:
    """Refuse an env whose EV interface is not the one ``controller`` acts in (the baselines act per port): the
    base's own check came only at the first reset, after the wrapper was built (and a corrector fitted).

    :param env: the env to wrap
    :param controller: the wrapper's base controller
    :param wrapper: the wrapper's name, for the message
    :raises ValueError: naming both interfaces and the env to wrap instead
    """
    dispatch, has = getattr(controller, "ev_dispatch", None), env.unwrapped.scenario.ev.dispatch
    if dispatch is not None and dispatch != has:
        raise ValueError(
            f"{wrapper}: its base controller acts with ev.dispatch = {dispatch!r}, this env has {has!r}: wrap "
            f"env.unwrapped.with_dispatch({dispatch!r}), the same days and noise"
        )


class PolicyView(gym.Wrapper):
    """``env`` with the observation space and layout of the policy's inputs (what the policy's checks and its
    ``VecNormalize`` statistics are matched against).

    :param env: the plain env
    :param layout: the layout of what the policy observes
    """

    def __init__(self, env: MicrogridEnv, layout: ObservationLayout) -> None:
        super().__init__(env)
        self.obs_layout = layout
        self.observation_space = observation_space(layout)


class AgentPolicy:
    """A wrapper's stand-in policy while it trains: there the agent, not a policy, supplies the action."""

    name = "agent"
