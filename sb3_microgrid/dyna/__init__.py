"""Model-based SAC: a probabilistic ensemble world model and MBPO-style imagined rollouts."""

from sb3_microgrid.dyna.dyna_sac import DynaSAC, MixedSampler, ModelReplayBuffer
from sb3_microgrid.dyna.world_model import EnsembleLinear, FitResult, Prediction, TooFewTransitions, WorldModel

__all__ = ["DynaSAC", "EnsembleLinear", "FitResult", "MixedSampler", "ModelReplayBuffer", "Prediction", "TooFewTransitions", "WorldModel"]
