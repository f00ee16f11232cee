"""TwinValuePPO: PPO with two value heads and an early stop on the exact KL divergence."""

from typing import ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv

from sb3_microgrid.twin_ppo.buffers import BehaviourRolloutBuffer, BehaviourRolloutBufferSamples
from sb3_microgrid.twin_ppo.policies import MlpPolicy, TwinValueActorCriticPolicy

SelfTwinValuePPO = TypeVar("SelfTwinValuePPO", bound="TwinValuePPO")


def _select(samples: BehaviourRolloutBufferSamples, indices: th.Tensor) -> BehaviourRolloutBufferSamples:
    """Rows ``indices`` of every field of a rollout sample."""
    return BehaviourRolloutBufferSamples(*(field[indices] for field in samples))


class TwinValuePPO(PPO):
    """
    PPO with two independent value heads (see :class:`TwinValueActorCriticPolicy`) and an early stop on the
    exact KL divergence between the behaviour policy (the one that collected the rollout) and the updated one.

    The rollout values, GAE and bootstraps use the heads' aggregate (``policy_kwargs=dict(value_aggregation=...)``,
    ``"min"`` by default); both heads are fitted to the same returns, the value loss being the mean of their MSEs
    (with ``clip_range_vf``, each head is clipped around its own rollout-time value). The rollout buffer is a
    :class:`~sb3_microgrid.twin_ppo.buffers.BehaviourRolloutBuffer`, which keeps the mean and std of the Gaussian
    each action was drawn from: under parameter noise that is the perturbed policy, not the weights ``train()``
    starts from. Only ``Box`` observation and action spaces (diagonal Gaussian, gSDE) are supported.

    Parameters are those of :class:`~stable_baselines3.PPO`, except:

    :param policy: a :class:`TwinValueActorCriticPolicy` (or ``"MlpPolicy"``)
    :param target_kl: stop the epochs when the exact mean ``KL(behaviour || new)`` of a minibatch exceeds this value.
        Not PPO's ``target_kl``: SB3's PPO stops when its sampled estimate of ``KL(old || new)`` exceeds
        ``1.5 * target_kl``, so the same number stops earlier here (pass 1.5 times a value tuned for PPO).
        ``None``: no limit.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    policy: TwinValueActorCriticPolicy

    def _setup_model(self) -> None:
        if not isinstance(self.observation_space, spaces.Box):
            raise TypeError(f"TwinValuePPO supports Box observation spaces only, not {self.observation_space}")
        if self.rollout_buffer_class is None:
            self.rollout_buffer_class = BehaviourRolloutBuffer
        super()._setup_model()
        if not isinstance(self.policy, TwinValueActorCriticPolicy):
            raise TypeError(f"TwinValuePPO needs a TwinValueActorCriticPolicy, not {type(self.policy).__name__}")
        if not isinstance(self.action_space, spaces.Box):
            raise TypeError(f"TwinValuePPO supports Box action spaces only (exact Gaussian KL), not {self.action_space}")
        if not isinstance(self.rollout_buffer, BehaviourRolloutBuffer):
            raise TypeError(
                f"TwinValuePPO needs a BehaviourRolloutBuffer as rollout_buffer_class, got {type(self.rollout_buffer).__name__}"
            )

    def collect_rollouts(self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int) -> bool:
        # SB3's loop calls policy.forward() once per step, just before rollout_buffer.add(): the hook stores the
        # Gaussian that drew the step's actions, with whatever weights were acting
        assert isinstance(rollout_buffer, BehaviourRolloutBuffer)
        hook = self.policy.register_forward_hook(lambda policy, args, output: rollout_buffer.record_behaviour(policy.action_dist.distribution))
        try:
            return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        finally:
            hook.remove()

    def train(self) -> None:
        """
        Update policy using the currently gathered rollout buffer.
        """
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]

        rollout = next(self.rollout_buffer.get())
        if clip_range_vf is not None:
            # The value heads are still those of the rollout (and in the eval mode it collected in): each head's
            # rollout-time values, for per-head clipping
            with th.no_grad():
                old_values = th.cat(self.policy.predict_both_values(rollout.observations), dim=1)

        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)

        entropy_losses, pg_losses, value_losses, value_gaps, clip_fractions = [], [], [], [], []
        n_samples = self.rollout_buffer.buffer_size * self.rollout_buffer.n_envs
        n_grad_steps = 0
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs, kl_divs = [], []
            for indices in th.randperm(n_samples, device=self.device).split(self.batch_size):
                rollout_data = _select(rollout, indices)
                values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, rollout_data.actions)
                # evaluate_actions() leaves the distribution it built in action_dist: no second actor pass
                new_distribution = self.policy.action_dist.distribution

                advantages = rollout_data.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                ratio = th.exp(log_prob - rollout_data.old_log_prob)
                policy_loss_1 = advantages * ratio
                policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()
                pg_losses.append(policy_loss.item())
                clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())

                if clip_range_vf is None:
                    values_pred = values
                else:
                    batch_old_values = old_values[indices]
                    values_pred = batch_old_values + th.clamp(values - batch_old_values, -clip_range_vf, clip_range_vf)
                # Both heads fit the same returns; their mean keeps value_loss on PPO's scale
                value_loss_per_head = ((rollout_data.returns.unsqueeze(1) - values_pred) ** 2).mean(dim=0)
                value_loss = value_loss_per_head.mean()
                value_losses.append(value_loss_per_head.tolist())
                value_gaps.append((values[:, 0] - values[:, 1]).abs().mean().item())

                # No analytical entropy with a squashed gSDE distribution
                entropy_loss = th.mean(log_prob) if entropy is None else -th.mean(entropy)
                entropy_losses.append(entropy_loss.item())

                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

                with th.no_grad():
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_divs.append(th.mean((th.exp(log_ratio) - 1) - log_ratio).item())
                    behaviour = th.distributions.Normal(rollout_data.behaviour_mean, rollout_data.behaviour_std)
                    kl_div = th.distributions.kl_divergence(behaviour, new_distribution).sum(dim=-1).mean().item()
                    kl_divs.append(kl_div)

                # Exact and noise-free, so no 1.5 slack as in SB3's sampled estimate
                if self.target_kl is not None and kl_div > self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {kl_div:.4f}")
                    break

                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
                n_grad_steps += 1

            self._n_updates += 1
            if not continue_training:
                break

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        value_loss_1, value_loss_2 = np.mean(value_losses, axis=0)

        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", (value_loss_1 + value_loss_2) / 2)
        self.logger.record("train/value_loss_1", value_loss_1)
        self.logger.record("train/value_loss_2", value_loss_2)
        self.logger.record("train/value_gap", np.mean(value_gaps))
        self.logger.record("train/kl", np.mean(kl_divs))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/n_grad_steps", n_grad_steps)
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)

    def learn(
        self: SelfTwinValuePPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "TwinValuePPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfTwinValuePPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
