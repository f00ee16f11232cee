"""A learned world model: an ensemble of probabilistic networks (Chua et al. 2018, PETS; Janner et al. 2019, MBPO).

Each member maps ``(observation, action)`` to a diagonal Gaussian over ``[next_observation - observation, reward]``.
The members are one batched network: every layer holds the weights of all members stacked on a leading axis and
applies them with one ``torch.baddbmm``, so no Python loop runs over members. Inputs and targets are standardised
with statistics of the training data of the last :meth:`WorldModel.fit`; everything the public methods take and
return is in the data's own (raw) units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch as th
from torch import nn
from torch.nn import functional as F

# Spread below which a feature or target counts as constant in the training data.
_MIN_STD = 1e-6
# Weight of the penalty that pulls the learnable log-variance bounds together (as in PETS / MBPO).
_BOUND_PENALTY = 0.01
# An epoch improves a member when its holdout NLL (nats per standardised output) drops by more than this.
_MIN_IMPROVEMENT = 0.01


class TooFewTransitions(ValueError):
    """:meth:`WorldModel.fit` was given too few transitions to hold one out and train on two."""


class EnsembleLinear(nn.Module):
    """
    ``ensemble_size`` independent linear layers applied at once to a ``(ensemble_size, batch, in_features)`` input.

    Initialised like ``nn.Linear`` (uniform in ``+-1/sqrt(in_features)``), from the given generator, so building a
    model never touches torch's global random stream.

    :param ensemble_size: number of members
    :param in_features: input size
    :param out_features: output size
    :param rng: generator of the initial weights
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int, rng: np.random.Generator) -> None:
        super().__init__()
        bound = 1.0 / np.sqrt(in_features)
        weight = rng.uniform(-bound, bound, (ensemble_size, in_features, out_features)).astype(np.float32)
        bias = rng.uniform(-bound, bound, (ensemble_size, 1, out_features)).astype(np.float32)
        self.weight = nn.Parameter(th.from_numpy(weight))
        self.bias = nn.Parameter(th.from_numpy(bias))

    def forward(self, x: th.Tensor) -> th.Tensor:
        return th.baddbmm(self.bias, x, self.weight)


class Prediction(NamedTuple):
    """What the ensemble predicts for a batch of ``(observation, action)`` pairs, in raw units.

    ``mean`` and ``var`` are ``(ensemble_size, batch, obs_dim + 1)``: the change of observation, then the reward.
    ``disagreement`` is ``(batch,)``: the spread of the members' means (see :meth:`WorldModel.predict`).
    """

    mean: np.ndarray
    var: np.ndarray
    disagreement: np.ndarray


class FitResult(NamedTuple):
    """Outcome of :meth:`WorldModel.fit`: epochs run, whether early stopping ended the fit (rather than
    ``max_epochs``), and each member's holdout Gaussian NLL (constant dropped, unweighted) and mean squared error of
    its mean at its kept epoch (standardised targets, mean over outputs)."""

    epochs: int
    stopped_early: bool
    holdout_nll: np.ndarray
    holdout_mse: np.ndarray


class WorldModel(nn.Module):
    """
    Ensemble of probabilistic networks predicting ``next_obs - obs`` and the reward from ``(obs, action)``.

    Each member outputs a mean and a log-variance per target; the log-variance is softly bounded between learnable
    limits (softplus clamps, the limits themselves regularised towards each other) and the members are trained with
    the Gaussian negative log-likelihood, each on its own bootstrap resample of the training split. Each target's
    NLL is weighted by its predicted variance to the power ``nll_beta`` (held constant in the gradient): the
    beta-NLL of Seitzer et al. (2022). With the plain NLL (``nll_beta=0``, as in PETS and MBPO) the outputs that are
    already predicted precisely get weights up to ``exp(-min_log_var)`` and take over the shared layers: on
    ``Microgrid-v0``, whose observation holds 160 window features that mostly shift by one row each step, the
    plain NLL does not learn how the battery action moves the state of charge (``tests/test_dyna.py``, slow test).
    The weighting leaves each target's optimal mean and variance unchanged.

    The uncertainty of a prediction is the disagreement of the members: the standard deviation over members of
    their means, in standardised target units, root-mean-squared over the outputs (0 where all members agree;
    about 1 where they differ by a whole spread of the training targets).

    :param obs_dim: size of the (flat) observation
    :param action_dim: size of the (flat) action
    :param rng: generator of the initial weights
    :param ensemble_size: number of members
    :param net_arch: hidden layer sizes (shared by all members)
    :param learning_rate: Adam learning rate
    :param weight_decay: L2 penalty on the hidden and output weights (not on biases and bounds)
    :param min_log_var: initial lower bound of the standardised log-variance
    :param max_log_var: initial upper bound of the standardised log-variance
    :param nll_beta: exponent of the variance weighting of the NLL, in ``[0, 1]`` (0: plain NLL; 1: the means get
        the gradient of a squared error)
    :param device: torch device
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        rng: np.random.Generator,
        ensemble_size: int = 5,
        net_arch: Sequence[int] = (128, 128),
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        min_log_var: float = -10.0,
        max_log_var: float = 0.5,
        nll_beta: float = 0.5,
        device: th.device | str = "cpu",
    ) -> None:
        super().__init__()
        if ensemble_size < 2:
            raise ValueError(f"ensemble_size must be >= 2 (the disagreement needs several members), got {ensemble_size}")
        if not net_arch or min(net_arch) < 1:
            raise ValueError(f"net_arch must be a non-empty list of positive layer sizes, got {list(net_arch)}")
        if not min_log_var < max_log_var:
            raise ValueError(f"min_log_var ({min_log_var}) must be < max_log_var ({max_log_var})")
        if not 0.0 <= nll_beta <= 1.0:
            raise ValueError(f"nll_beta must be in [0, 1], got {nll_beta}")
        self.nll_beta = nll_beta
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.ensemble_size = ensemble_size
        in_dim, out_dim = obs_dim + action_dim, obs_dim + 1
        sizes = [in_dim, *net_arch]
        self.hidden = nn.ModuleList(EnsembleLinear(ensemble_size, a, b, rng) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = EnsembleLinear(ensemble_size, sizes[-1], 2 * out_dim, rng)
        self.min_log_var = nn.Parameter(th.full((ensemble_size, 1, out_dim), float(min_log_var)))
        self.max_log_var = nn.Parameter(th.full((ensemble_size, 1, out_dim), float(max_log_var)))
        for name, size in (("input_mean", in_dim), ("input_std", in_dim), ("target_mean", out_dim), ("target_std", out_dim)):
            self.register_buffer(name, th.zeros(size) if name.endswith("mean") else th.ones(size))
        self.register_buffer("fitted", th.tensor(False))
        self.to(device)
        weights = [layer.weight for layer in (*self.hidden, self.head)]
        others = [p for p in self.parameters() if all(p is not w for w in weights)]
        self.optimizer = th.optim.Adam(
            [{"params": weights, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}], lr=learning_rate
        )

    @property
    def device(self) -> th.device:
        return self.head.weight.device

    def forward(self, inputs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        Standardised means and bounded log-variances of every member.

        :param inputs: standardised ``[obs, action]``, ``(ensemble_size, batch, obs_dim + action_dim)``
        :return: ``(mean, log_var)``, each ``(ensemble_size, batch, obs_dim + 1)``
        """
        x = inputs
        for layer in self.hidden:
            x = F.silu(layer(x))
        mean, log_var = self.head(x).chunk(2, dim=-1)
        log_var = self.max_log_var - F.softplus(self.max_log_var - log_var)
        log_var = self.min_log_var + F.softplus(log_var - self.min_log_var)
        return mean, log_var

    @staticmethod
    def _raw_inputs(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, actions], axis=-1)

    @staticmethod
    def _raw_targets(obs: np.ndarray, next_obs: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        return np.concatenate([next_obs - obs, rewards.reshape(-1, 1)], axis=-1)

    def _standardise(self, raw: np.ndarray, kind: str) -> th.Tensor:
        """``raw`` inputs (``kind="input"``) or targets (``"target"``) scaled with the training statistics."""
        mean, std = getattr(self, f"{kind}_mean"), getattr(self, f"{kind}_std")
        return (th.as_tensor(raw, dtype=th.float32, device=self.device) - mean) / std

    def _losses(self, inputs: th.Tensor, targets: th.Tensor, beta: float) -> tuple[th.Tensor, th.Tensor]:
        """Per member: the Gaussian NLL (constant dropped) weighted by ``variance ** beta``, and the squared error
        of the mean, each a mean over rows and outputs."""
        mean, log_var = self(inputs)
        squared = (mean - targets) ** 2
        nll = squared * th.exp(-log_var) + log_var
        if beta:
            nll = nll * th.exp(beta * log_var.detach())
        return nll.mean(dim=(1, 2)), squared.mean(dim=(1, 2))

    def fit(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        next_obs: np.ndarray,
        rewards: np.ndarray,
        rng: np.random.Generator,
        holdout_ratio: float = 0.2,
        max_epochs: int = 20,
        patience: int = 5,
        batch_size: int = 256,
    ) -> FitResult:
        """
        Train the ensemble on transitions, holding out a random part to stop early.

        The standardisation statistics are recomputed from the training split. Each member trains on its own
        bootstrap resample (drawn once per fit, shuffled every epoch). After each epoch the plain Gaussian NLL of
        every member on the holdout is measured (unweighted: the beta weights shrink with the variance, so an
        absolute threshold on the weighted loss would stop ever earlier); a member's weights are kept from its best
        epoch, and the fit stops once no member has improved by more than 0.01 nats for ``patience`` epochs in a row
        (or after ``max_epochs``). MBPO judges the holdout by the squared error of the means instead; that plateaus
        before the variance head has converged, and keeping each member's best-MSE weights then keeps a poorly
        fitted variance.

        :param obs: observations ``(n, obs_dim)``
        :param actions: actions ``(n, action_dim)``
        :param next_obs: next observations ``(n, obs_dim)``
        :param rewards: rewards ``(n,)``
        :param rng: generator of the split, the bootstrap and the minibatch order
        :param holdout_ratio: fraction of the transitions held out, in ``(0, 1)``
        :param max_epochs: most passes over the training split
        :param patience: epochs without improvement before stopping
        :param batch_size: minibatch size (per member)
        """
        n = len(obs)
        if not 0.0 < holdout_ratio < 1.0:
            raise ValueError(f"holdout_ratio must be in (0, 1), got {holdout_ratio}")
        if max_epochs < 1 or patience < 1 or batch_size < 1:
            raise ValueError(f"max_epochs, patience and batch_size must be >= 1, got {max_epochs}, {patience}, {batch_size}")
        n_holdout = int(round(holdout_ratio * n))
        if n_holdout < 1 or n - n_holdout < 2:
            raise TooFewTransitions(f"fit needs at least one holdout and two training transitions, got {n} with holdout_ratio={holdout_ratio}")
        order = rng.permutation(n)
        train, hold = order[n_holdout:], order[:n_holdout]
        raw_inputs, raw_targets = self._raw_inputs(obs, actions), self._raw_targets(obs, next_obs, rewards)
        self._set_statistics(raw_inputs[train], raw_targets[train])
        inputs, targets = self._standardise(raw_inputs, "input"), self._standardise(raw_targets, "target")
        hold_t = th.as_tensor(hold, device=self.device)
        hold_inputs, hold_targets = inputs[hold_t].expand(self.ensemble_size, -1, -1), targets[hold_t]
        bootstrap = train[rng.integers(0, len(train), (self.ensemble_size, len(train)))]

        best_nll, best_mse = self._holdout_scores(hold_inputs, hold_targets)
        best_state = {name: p.detach().clone() for name, p in self.named_parameters()}
        epochs, since_improved = 0, 0
        while epochs < max_epochs and since_improved < patience:
            shuffled = th.as_tensor(rng.permuted(bootstrap, axis=1), device=self.device)
            for start in range(0, len(train), batch_size):
                batch = shuffled[:, start : start + batch_size]
                loss = self._losses(inputs[batch], targets[batch], self.nll_beta)[0].sum()
                loss = loss + _BOUND_PENALTY * (self.max_log_var.sum() - self.min_log_var.sum())
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
            epochs += 1
            nll, mse = self._holdout_scores(hold_inputs, hold_targets)
            improved = best_nll - nll > _MIN_IMPROVEMENT
            if improved.any():
                best_nll, best_mse = np.where(improved, nll, best_nll), np.where(improved, mse, best_mse)
                mask = th.as_tensor(improved, device=self.device)
                with th.no_grad():
                    for name, p in self.named_parameters():
                        best_state[name][mask] = p[mask]
            since_improved = 0 if improved.any() else since_improved + 1
        with th.no_grad():
            for name, p in self.named_parameters():
                p.copy_(best_state[name])
        self.fitted.fill_(True)
        return FitResult(epochs, since_improved >= patience, best_nll, best_mse)

    def _holdout_scores(self, inputs: th.Tensor, targets: th.Tensor) -> tuple[np.ndarray, np.ndarray]:
        with th.no_grad():
            loss, mse = self._losses(inputs, targets, beta=0.0)
        return loss.cpu().numpy(), mse.cpu().numpy()

    def _set_statistics(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        """Means and spreads of the training data. A constant input is left unscaled (dividing by a tiny spread
        would make any later variation of it enormous); a constant target keeps a tiny scale, so that the
        standardised noise the model predicts for it stays negligible in raw units (a unit scale would turn it
        into noise of the order of 1, e.g. a day on the episode clock)."""
        input_std, target_std = inputs.std(axis=0), targets.std(axis=0)
        self.input_mean.copy_(th.as_tensor(inputs.mean(axis=0)))
        self.input_std.copy_(th.as_tensor(np.where(input_std < _MIN_STD, 1.0, input_std)))
        self.target_mean.copy_(th.as_tensor(targets.mean(axis=0)))
        self.target_std.copy_(th.as_tensor(np.maximum(target_std, _MIN_STD)))

    def predict(self, obs: np.ndarray, actions: np.ndarray) -> Prediction:
        """
        Every member's Gaussian over ``[next_obs - obs, reward]``, and the members' disagreement.

        :param obs: observations ``(batch, obs_dim)``
        :param actions: actions ``(batch, action_dim)``
        """
        if not self.fitted:
            raise RuntimeError("the world model has not been fitted yet: call fit() first")
        with th.no_grad():
            mean, log_var = self(self._standardise(self._raw_inputs(obs, actions), "input").expand(self.ensemble_size, -1, -1))
            disagreement = mean.std(dim=0, correction=0).pow(2).mean(dim=-1).sqrt()
            raw_mean = mean * self.target_std + self.target_mean
            raw_var = th.exp(log_var) * self.target_std**2
        return Prediction(raw_mean.cpu().numpy(), raw_var.cpu().numpy(), disagreement.cpu().numpy())

    def sample(self, obs: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Imagined next observations and rewards: for each row, a member drawn at random, then a draw from its
        Gaussian (PETS' "TS1" propagation).

        :param obs: observations ``(batch, obs_dim)``
        :param actions: actions ``(batch, action_dim)``
        :param rng: generator of the member choice and the Gaussian noise
        :return: ``(next_obs (batch, obs_dim), rewards (batch,), disagreement (batch,))``
        """
        prediction = self.predict(obs, actions)
        rows = np.arange(len(obs))
        members = rng.integers(0, self.ensemble_size, len(obs))
        mean, var = prediction.mean[members, rows], prediction.var[members, rows]
        change = mean + np.sqrt(var) * rng.standard_normal(mean.shape, dtype=np.float32)
        return (obs + change[:, :-1]).astype(obs.dtype), change[:, -1], prediction.disagreement
