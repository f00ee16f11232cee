"""EpsilonSAC: SAC with epsilon-random actions."""

from stable_baselines3 import SAC

from sb3_microgrid.common.epsilon import EpsilonOffPolicyMixin


class EpsilonSAC(EpsilonOffPolicyMixin, SAC):
    """:class:`~stable_baselines3.SAC` with epsilon-random actions (:class:`EpsilonOffPolicyMixin`).

    :param epsilon: probability in [0, 1] of a uniform action
    Other arguments are those of :class:`~stable_baselines3.SAC`.
    """
