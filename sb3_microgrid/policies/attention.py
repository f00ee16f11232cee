"""A features extractor that attends over the observation's history and forecast window."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..envs.layout import ObservationLayout
from ..common.arguments import checked_number


def resolve_layout(
    observation_space: gym.spaces.Box, layout: ObservationLayout | dict[str, Any] | None = None
) -> ObservationLayout:
    """The layout of ``observation_space``: its ``.layout`` attribute, else ``layout``.

    :param observation_space: a flat ``Box``, normally the env's, which carries ``.layout``
    :param layout: for a space that lost its ``.layout``: an :class:`ObservationLayout` or its ``to_dict()``
    :return: the layout, checked against the space's shape
    """
    given = ObservationLayout.from_dict(layout) if isinstance(layout, dict) else layout
    carried = getattr(observation_space, "layout", None)
    if given is not None and carried is not None and given != carried:
        raise ValueError(f"the layout argument {given} differs from the observation space's .layout {carried}")
    found = carried if carried is not None else given
    if found is None:
        raise ValueError(
            f"the observation space {observation_space} has no .layout (an ObservationLayout): build the policy "
            "from the microgrid env's own space (MicrogridEnv, MicrogridVecEnv and their wrappers keep it), or pass "
            "features_extractor_kwargs=dict(layout=env.unwrapped.obs_layout) (an ObservationLayout or its to_dict())"
        )
    if observation_space.shape != (found.size,):
        raise ValueError(
            f"the layout describes a flat vector of {found.size} values, the observation space has shape {observation_space.shape}"
        )
    return found


class ForecastAttentionExtractor(BaseFeaturesExtractor):
    """Self-attention over the time steps of the observation's window, plus an MLP on the static block.

    The window ``(history_steps + forecast_steps, series)`` is read through the space's
    :class:`~sb3_microgrid.envs.ObservationLayout`, never through fixed indices. Each step is embedded
    (shared linear map of its series) and given a learned embedding of its position, so the model can
    tell history from each forecast lead. After ``n_layers`` Transformer encoder blocks (post-norm:
    attention and feed-forward, each with residual and LayerNorm) the steps are pooled into their mean
    and the current step's token (row ``history_steps``), concatenated with the static encoding and
    projected to ``features_dim`` with a ReLU.

    The layout must have a forecast window (``forecast_steps >= 1`` and at least one window series): the current
    step's token is its first forecast row. A layout without one (``ResidualWrapper(features=[...])``,
    ``CalibrationWrapper``) is refused with a ``ValueError`` at construction; use the default MLP extractor there.

    :param observation_space: the env's flat ``Box``; its ``.layout`` says where the window is
    :param embed_dim: width (``>= 1``) of a step's token
    :param n_heads: attention heads (``>= 1``); must divide ``embed_dim``
    :param n_layers: Transformer encoder blocks (``>= 1``)
    :param ff_dim: hidden width (``>= 1``) of the position-wise feed-forward; ``None`` means ``4 * embed_dim``
    :param dropout: dropout in ``[0, 1]`` inside the encoder blocks
    :param static_dim: output width (``>= 1``) of the static block's MLP
    :param features_dim: number (``>= 1``) of features given to the policy and value heads
    :param layout: only for a space without ``.layout``: an :class:`ObservationLayout` or its ``to_dict()``
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        embed_dim: int = 64,
        n_heads: int = 4,
        n_layers: int = 1,
        ff_dim: int | None = None,
        dropout: float = 0.0,
        static_dim: int = 64,
        features_dim: int = 128,
        layout: ObservationLayout | dict[str, Any] | None = None,
    ) -> None:
        embed_dim, n_heads, n_layers, static_dim, features_dim = (
            checked_number(name, value, 1, math.inf, integer=True)
            for name, value in (("embed_dim", embed_dim), ("n_heads", n_heads), ("n_layers", n_layers), ("static_dim", static_dim),
                                ("features_dim", features_dim))
        )  # fmt: skip
        if ff_dim is not None:
            ff_dim = checked_number("ff_dim", ff_dim, 1, math.inf, integer=True)
        dropout = checked_number("dropout", dropout, 0, 1)
        if embed_dim % n_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by n_heads ({n_heads}): each head takes embed_dim // n_heads")
        found = resolve_layout(observation_space, layout)
        steps, series = found.window_shape
        if found.forecast_steps < 1 or series < 1:
            # forward() reads the current step's token at row history_steps, the first forecast row
            raise ValueError(
                f"the observation layout has no forecast window to attend over (forecast_steps = {found.forecast_steps}, "
                f"window_shape {found.window_shape}; ForecastAttentionExtractor needs forecast_steps in [1, inf] and at "
                "least one window series): use the default MLP features extractor for this observation, as for "
                "ResidualWrapper(features=[...]) or CalibrationWrapper"
            )
        super().__init__(observation_space, features_dim)
        self.layout = found
        self.step_embed = nn.Linear(series, embed_dim)
        # Random (not zero) start: with equal position embeddings attention and mean pooling cannot
        # tell history from forecast rows.
        self.position = nn.Parameter(th.randn(1, steps, embed_dim) * 0.02)
        ff_dim = 4 * embed_dim if ff_dim is None else ff_dim
        block = nn.TransformerEncoderLayer(embed_dim, n_heads, ff_dim, dropout, batch_first=True, norm_first=False)
        # No padding masks are ever passed, so the nested-tensor path would never apply.
        self.encoder = nn.TransformerEncoder(block, n_layers, enable_nested_tensor=False)
        self.static_net = nn.Sequential(
            nn.Linear(self.layout.n_static, static_dim), nn.ReLU(), nn.Linear(static_dim, static_dim), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Linear(2 * embed_dim + static_dim, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        window = self.layout.windows(observations)
        # The math kernel has a second derivative (TRPO's Hessian-vector products); the CPU flash kernel has none.
        with sdpa_kernel(SDPBackend.MATH):
            tokens = self.encoder(self.step_embed(window) + self.position)
        # The mean summarises the whole horizon; the current step's token keeps what matters now.
        pooled = th.cat([tokens.mean(dim=1), tokens[:, self.layout.history_steps]], dim=1)
        return self.head(th.cat([pooled, self.static_net(observations[:, self.layout.static])], dim=1))
