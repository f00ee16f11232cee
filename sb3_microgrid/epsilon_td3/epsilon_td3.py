"""EpsilonTD3: TD3 with epsilon-random actions."""

from stable_baselines3 import TD3

from sb3_microgrid.common.epsilon import EpsilonOffPolicyMixin


class EpsilonTD3(EpsilonOffPolicyMixin, TD3):
    """:class:`~stable_baselines3.TD3` with epsilon-random actions (:class:`EpsilonOffPolicyMixin`); the
    uniform action replaces the noisy one.

    :param epsilon: probability in [0, 1] of a uniform action
    Other arguments are those of :class:`~stable_baselines3.TD3`.
    """
