"""Refusals, at a callback's init, of models a callback cannot run with (rather than a crash or a silent no-op later)."""

from __future__ import annotations

from sb3_contrib import ARS
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.base_class import BaseAlgorithm


def refuse_recurrent(model: BaseAlgorithm, callback: str) -> None:
    """Refuse a callback that evaluates the policy on observations alone, on a recurrent policy (``ppo_lstm``).

    :param model: the model the callback is initialised with
    :param callback: the callback's name, for the message
    :raises TypeError: naming the callback, if ``model.policy`` is a ``RecurrentActorCriticPolicy``
    """
    if isinstance(model.policy, RecurrentActorCriticPolicy):
        raise TypeError(
            f"{callback} cannot run with {type(model).__name__}: its {type(model.policy).__name__} needs LSTM states to "
            "give a distribution or a value; use a feed-forward policy (ppo, a2c, twin_ppo)"
        )


def refuse_plain_ars(model: BaseAlgorithm, callback: str, reason: str) -> None:
    """Refuse a callback on sb3-contrib's ``ARS`` itself, which calls ``on_step()`` without the step's locals
    (``rewards``, ``dones``, ``infos``) and discards its return; :class:`~sb3_microgrid.paired_ars.PairedARS`
    (``paired_ars``) passes both.

    :param model: the model the callback is initialised with
    :param callback: the callback (and argument) refused, for the message
    :param reason: what the callback would miss under ``ARS``
    :raises TypeError: naming the callback and ``paired_ars``, if ``model`` is an ``ARS`` (not a subclass)
    """
    if type(model) is ARS:
        raise TypeError(f"{callback} cannot run under sb3-contrib's ARS ({reason}); use paired_ars (PairedARS), which supports it")
