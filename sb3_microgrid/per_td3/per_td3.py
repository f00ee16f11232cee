"""PerTD3: TD3 trained from a prioritized replay buffer."""


import numpy as np
import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.utils import polyak_update

from sb3_microgrid.common.prioritized import PrioritizedOffPolicyMixin


class PerTD3(PrioritizedOffPolicyMixin, TD3):
    """
    TD3 with prioritized experience replay (:class:`~sb3_microgrid.buffers.PrioritizedReplayBuffer`).

    SB3's ``TD3.train()`` neither weights the critic loss nor reports TD errors, so this subclass changes three
    things in it: each critic's squared error is weighted by the batch's importance weights (keeping TD3's scale,
    the sum over critics of their MSE, so that uniform weights give TD3's loss), the mean over critics of
    ``|target - Q|`` is written back as the new priorities, and (unless the buffer anneals ``beta`` itself through
    ``beta_steps``) ``beta`` follows the training progress. Everything else is SB3's TD3.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, ...)
    :param env: The environment to learn from
    :param replay_buffer_class: A ``PrioritizedReplayBuffer`` (sub)class; ``None`` means ``PrioritizedReplayBuffer``
    :param kwargs: Any other :class:`~stable_baselines3.TD3` argument (``replay_buffer_kwargs`` takes ``alpha``,
        ``beta``, ``beta_final``, ``beta_steps``, ``epsilon``)
    """

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)

        # Update learning rate according to lr schedule
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])

        replay_buffer = self._prioritized_buffer()

        actor_losses, critic_losses = [], []
        for _ in range(gradient_steps):
            self._n_updates += 1
            # Sample replay buffer
            replay_data = replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            # For n-step replay, discount factor is gamma**n_steps (when no early termination)
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma

            with th.no_grad():
                # Select action according to policy and add clipped noise
                noise = replay_data.actions.clone().data.normal_(0, self.target_policy_noise)
                noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
                next_actions = (self.actor_target(replay_data.next_observations) + noise).clamp(-1, 1)

                # Compute the next Q-values: min over all critics targets
                next_q_values = th.cat(self.critic_target(replay_data.next_observations, next_actions), dim=1)
                next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

            # Get current Q-values estimates for each critic network
            current_q_values = th.cat(self.critic(replay_data.observations, replay_data.actions), dim=1)
            td_errors = current_q_values - target_q_values

            # Importance-weighted critic loss: sum over critics of the weighted MSE
            critic_loss = (replay_data.weights * td_errors**2).mean(dim=0).sum()
            critic_losses.append(critic_loss.item())

            # Optimize the critics
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            replay_buffer.update_priorities(replay_data.indices, td_errors.detach().abs().mean(dim=1))

            # Delayed policy updates
            if self._n_updates % self.policy_delay == 0:
                # Compute actor loss
                actor_loss = -self.critic.q1_forward(replay_data.observations, self.actor(replay_data.observations)).mean()
                actor_losses.append(actor_loss.item())

                # Optimize the actor
                self.actor.optimizer.zero_grad()
                actor_loss.backward()
                self.actor.optimizer.step()

                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
                # Copy running stats, see GH issue #996
                polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
                polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if len(actor_losses) > 0:
            self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        self.logger.record("train/per_beta", replay_buffer.beta)
