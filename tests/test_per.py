"""Prioritized replay: the sum tree is exact, sampling follows the priorities, weights and indexing are right,
PerSAC/PerTD3 really use and update the priorities, save/load keeps everything, and arguments out of range (or
n-step returns) are refused at construction."""

import math
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from scipy import stats
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_microgrid import MicrogridEnv
from sb3_microgrid.buffers import PrioritizedReplayBuffer, SumTree, sum_tree
from sb3_microgrid.callbacks import AuxiliaryValueReplayCallback
from sb3_microgrid.common.safe_pickle import loads
from sb3_microgrid.per_sac import PerSAC
from sb3_microgrid.per_td3 import PerTD3


def tiny(**overrides) -> dict:
    """Small-budget algorithm kwargs (a fresh ``policy_kwargs`` each time: SAC writes ``use_sde`` into it)."""
    return dict(learning_starts=50, batch_size=32, buffer_size=2000, seed=0, policy_kwargs=dict(net_arch=[32, 32])) | overrides


def make_buffer(buffer_size: int = 64, n_envs: int = 1, **kwargs) -> PrioritizedReplayBuffer:
    obs_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = spaces.Box(-1, 1, (2,), np.float32)
    return PrioritizedReplayBuffer(buffer_size, obs_space, action_space, device="cpu", n_envs=n_envs, **kwargs)


def fill(buffer: PrioritizedReplayBuffer, steps: int) -> None:
    """Store transitions whose every field encodes their flat index ``pos * n_envs + env``."""
    n_envs = buffer.n_envs
    for pos in range(steps):
        code = (pos * n_envs + np.arange(n_envs)).astype(np.float32)
        obs = np.repeat(code[:, None], 3, axis=1)
        buffer.add(obs, obs + 0.5, np.repeat(code[:, None], 2, axis=1), code, np.zeros(n_envs), [{}] * n_envs)


@pytest.mark.parametrize("capacity", [1, 5, 64, 1000, 70_000])
def test_sum_tree_matches_cumsum(capacity: int, rng: np.random.Generator) -> None:
    tree = SumTree(capacity)
    priorities = rng.random(capacity)
    priorities[rng.random(capacity) < 0.3] = 0.0  # zero priorities must never be found
    priorities[0] += 0.1
    tree.update(np.arange(capacity), priorities)
    # batched writes with repeated indices: the last write wins
    indices = rng.integers(0, capacity, min(3 * capacity, 3000))
    values = rng.random(len(indices))
    tree.update(indices, values)
    for index, value in zip(indices, values):
        priorities[index] = value
    # a small batch in a big tree takes the sparse ancestor pass before the dense top levels
    small = rng.integers(0, capacity, 8)
    tree.update(small, np.full(8, 0.75))
    priorities[small] = 0.75
    tree.update_one(capacity - 1, 0.25)
    priorities[capacity - 1] = 0.25

    cumsum = np.cumsum(priorities)
    assert tree.total == pytest.approx(cumsum[-1], rel=1e-12)
    np.testing.assert_array_equal(tree[np.arange(capacity)], priorities)
    queries = rng.random(5000) * cumsum[-1]
    np.testing.assert_array_equal(tree.find_prefix_sum(queries), np.searchsorted(cumsum, queries, side="right"))
    # the very end of the range (where rounding bites) still lands on a positive priority
    found = tree.find_prefix_sum(np.array([np.nextafter(tree.total, 0), tree.total]))
    assert (priorities[found] > 0).all()


def test_sum_tree_searches_never_land_on_empty_leaves() -> None:
    tree = SumTree(16)
    priorities = np.zeros(16)
    priorities[[5, 6, 11]] = [1.0, 2.0, 0.5]
    tree.update(np.arange(16), priorities)
    # below the range, at its end and past it: the first / last positive item, never an empty one
    np.testing.assert_array_equal(tree.find_prefix_sum([-1.0, 0.0, 3.5, 4.0, np.inf]), [5, 5, 11, 11, 11])
    np.testing.assert_array_equal(tree.find_prefix_sum([[0.5, 1.0], [2.99, 3.0]]), [[5, 6], [6, 11]])
    tree.update(np.arange(16), np.zeros(16))
    with pytest.raises(ValueError, match="all zero"):
        tree.sample_stratified(4, np.random.default_rng(0))


def test_sum_tree_rejects_bad_updates_and_leaves_the_tree_untouched() -> None:
    tree = SumTree(10)
    tree.update(np.arange(10), np.ones(10))
    before = tree.nodes.copy()
    # one bad item at the end of a batch: nothing of the batch is written
    for indices, priorities in [([0, 10], [2.0, 2.0]), ([0, -1], [2.0, 2.0]), ([0, 1], [2.0, -1.0]), ([0, 1], [2.0, np.nan]), ([0, 1], [2.0, np.inf])]:
        with pytest.raises(ValueError, match=r"indices must be in \[0, 10\) and priorities finite and >= 0"):
            tree.update(np.array(indices), np.array(priorities))
    with pytest.raises(ValueError, match="same length"):
        tree.update(np.arange(3), np.ones(2))
    with pytest.raises(ValueError, match=r"index must be in \[0, 10\)"):
        tree.update_one(10, 1.0)
    with pytest.raises(ValueError, match="priority must be finite"):
        tree.update_one(0, np.nan)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        tree.sample_stratified(0, np.random.default_rng(0))
    np.testing.assert_array_equal(tree.nodes, before)


def test_sum_tree_does_not_drift(rng: np.random.Generator) -> None:
    capacity = 50_000
    tree = SumTree(capacity)
    for _ in range(300):
        # priorities over twelve orders of magnitude, the regime where delta updates lose the small ones
        indices = rng.integers(0, capacity, 1000)
        tree.update(indices, 10.0 ** rng.uniform(-6, 6, 1000))
        tree.update_one(int(rng.integers(capacity)), float(10.0 ** rng.uniform(-6, 6)))
    # every parent is exactly the sum of its children however many updates it has seen: nothing accumulates
    parents = np.arange(1, tree.size)
    np.testing.assert_array_equal(tree.nodes[parents], tree.nodes[2 * parents] + tree.nodes[2 * parents + 1])
    assert tree.total == pytest.approx(math.fsum(tree[np.arange(capacity)]), rel=1e-13)


def test_sum_tree_kernels_compile_once(rng: np.random.Generator) -> None:
    tree = SumTree(100)
    # integer widths, lists, reversed (non-contiguous) views, numpy scalars, 2-D queries
    tree.update(np.arange(100, dtype=np.int32), rng.random(100).astype(np.float32))
    tree.update([3, 4], [0.5, 1])
    tree.update(np.arange(100)[::-2], rng.random(100)[::-2])
    tree.update_one(np.int32(7), np.float32(0.25))
    tree.update_one(8, 1)
    tree.find_prefix_sum([0.0, 1.0])
    tree.find_prefix_sum(rng.random((2, 3)) * tree.total)
    tree.sample_stratified(5, rng)
    for kernel in (sum_tree._descend, sum_tree._update, sum_tree._update_one):
        assert len(kernel.signatures) == 1, (kernel, kernel.signatures)


def test_stratified_sampling_follows_priorities(rng: np.random.Generator) -> None:
    priorities = np.array([1.0, 2.0, 0.0, 4.0, 8.0, 0.5, 3.0])
    tree = SumTree(len(priorities))
    tree.update(np.arange(len(priorities)), priorities)
    n_batches, batch_size = 20_000, 16
    draws = np.stack([tree.sample_stratified(batch_size, rng) for _ in range(n_batches)])
    # Draws inside a batch are stratified, hence dependent (under-dispersed), so Pearson's test on pooled counts
    # would not have its nominal level. One uniformly chosen slot per batch is an exact draw from P (a uniform
    # segment plus a uniform offset is uniform over [0, total)), independent across batches: test those.
    picked = draws[np.arange(n_batches), rng.integers(0, batch_size, n_batches)]
    counts = np.bincount(picked, minlength=len(priorities))
    assert counts[2] == 0
    positive = priorities > 0
    expected = n_batches * priorities[positive] / priorities.sum()
    assert stats.chisquare(counts[positive], expected).pvalue > 1e-3
    # stratification: every batch holds each item about batch_size * P times (within one of it)
    per_batch = np.apply_along_axis(np.bincount, 1, draws, minlength=len(priorities))
    assert (np.abs(per_batch - batch_size * priorities / priorities.sum()) < 2).all()


def test_weights_are_normalised_importance_ratios(rng: np.random.Generator) -> None:
    alpha, beta, epsilon = 0.7, 0.5, 1e-6
    buffer = make_buffer(alpha=alpha, beta=beta, epsilon=epsilon)
    fill(buffer, 40)
    td_errors = rng.normal(size=40) * 3
    buffer.update_priorities(np.arange(40), td_errors)
    samples = buffer.sample(256)
    priorities = (np.abs(td_errors) + epsilon) ** alpha
    ratio = (40 * priorities[samples.indices] / priorities.sum()) ** -beta
    np.testing.assert_allclose(samples.weights.numpy().ravel(), ratio / ratio.max(), rtol=1e-5)
    assert samples.weights.shape == (256, 1)
    assert samples.weights.min() < 0.9  # the priorities differ, so the weights must too
    # the batch is the sampled transitions, in order
    np.testing.assert_array_equal(samples.observations[:, 0].numpy(), samples.indices)
    # the tensors own their data: writing into a batch leaves the buffer alone
    stored = buffer.observations.copy()
    for tensor in (samples.observations, samples.next_observations, samples.actions, samples.rewards):
        tensor += 1000
    np.testing.assert_array_equal(buffer.observations, stored)
    assert buffer.next_observations.max() < 1000 and buffer.actions.max() < 1000 and buffer.rewards.max() < 1000


def test_sample_normalizes_with_vec_normalize() -> None:
    buffer = make_buffer()
    fill(buffer, 20)
    env = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), clip_obs=5.0)
    env.obs_rms.mean, env.obs_rms.var = np.array([2.0, 4.0, 6.0]), np.array([4.0, 9.0, 1.0])
    env.ret_rms.var = np.array(16.0)
    samples = buffer.sample(64, env=env)
    code = samples.indices.astype(np.float64)[:, None]
    expected_obs = np.clip((code - env.obs_rms.mean) / np.sqrt(env.obs_rms.var + env.epsilon), -5, 5)
    np.testing.assert_allclose(samples.observations.numpy(), expected_obs, rtol=1e-5)
    np.testing.assert_allclose(samples.next_observations.numpy(), np.clip((code + 0.5 - env.obs_rms.mean) / np.sqrt(env.obs_rms.var + env.epsilon), -5, 5), rtol=1e-5)
    np.testing.assert_allclose(samples.rewards.numpy(), code / np.sqrt(16.0 + env.epsilon), rtol=1e-5)
    np.testing.assert_array_equal(samples.actions.numpy(), np.repeat(code, 2, axis=1))
    env.close()


@pytest.mark.filterwarnings("ignore:.*no update_priorities")  # sampling alone, on purpose
def test_beta_annealing() -> None:
    buffer = make_buffer(beta=0.4, beta_final=1.0, beta_steps=10)
    fill(buffer, 8)
    betas = []
    for _ in range(12):
        buffer.sample(4)
        betas.append(buffer.beta)
    assert betas[0] == pytest.approx(0.4) and betas[5] == pytest.approx(0.4 + 0.6 * 0.5) and betas[-1] == 1.0
    buffer.set_progress(0.25)
    assert make_buffer(beta=0.2, beta_final=0.6).beta == pytest.approx(0.2)
    assert buffer.beta == pytest.approx(0.55)


def test_new_transitions_get_max_priority() -> None:
    buffer = make_buffer()
    fill(buffer, 4)
    buffer.update_priorities(np.array([0, 1]), np.array([10.0, 0.0]))  # raises the maximum above 1
    fill(buffer, 1)  # a new transition, at leaf 4
    assert buffer.max_priority == pytest.approx(10**0.6)
    assert buffer.tree[4] == pytest.approx(10**0.6)  # not the initial 1.0
    # with two envs, both new leaves of a position get it
    buffer = make_buffer(n_envs=2)
    fill(buffer, 2)
    buffer.update_priorities(np.array([1]), np.array([5.0]))
    fill(buffer, 1)
    assert buffer.max_priority == pytest.approx(5**0.6)
    np.testing.assert_array_equal(buffer.tree[np.array([4, 5])], buffer.max_priority)


def test_add_gives_the_new_leaves_the_max_priority_across_the_wrap_as_per_env_updates_did(rng: np.random.Generator) -> None:
    buffer = make_buffer(buffer_size=15, n_envs=3)  # 5 positions of 3 envs
    reference = SumTree(15)  # the former add: one update_one per env

    def add(steps: int) -> None:
        for _ in range(steps):
            first = buffer.pos * buffer.n_envs
            fill(buffer, 1)
            for env in range(buffer.n_envs):
                reference.update_one(first + env, buffer.max_priority)

    add(3)
    for raise_to, steps in ((3.0, 1), (8.0, 3)):
        indices, errors = rng.choice(15, size=6, replace=False), rng.uniform(0, raise_to, size=6)
        errors[0] = raise_to  # raises the maximum
        buffer.update_priorities(indices, errors)
        reference.update(indices, buffer.tree[indices])
        add(steps)  # the last round writes positions 4, 0, 1: it wraps around the end of the buffer
    assert buffer.pos == 2 and buffer.full
    np.testing.assert_array_equal(buffer.tree[np.r_[12:15, 0:6]], buffer.max_priority)  # positions 4, 0, 1, all envs
    assert buffer.max_priority == pytest.approx(8.0**0.6)
    # identical trees, hence identical sampling probabilities and identical stratified samples
    np.testing.assert_array_equal(buffer.tree.nodes, reference.nodes)
    np.testing.assert_array_equal(
        buffer.tree.sample_stratified(64, np.random.default_rng(0)), reference.sample_stratified(64, np.random.default_rng(0))
    )


def test_two_envs_map_samples_to_their_transitions() -> None:
    buffer = make_buffer(buffer_size=20, n_envs=2)
    fill(buffer, 13)  # wraps around: 10 positions of 2 envs
    assert buffer.tree.capacity == 20
    # only env 1 of position 1 keeps a priority: every sample must be that transition
    buffer.epsilon = 0.0
    buffer.update_priorities(np.arange(20), np.zeros(20))
    buffer.update_priorities(np.array([1 * 2 + 1]), np.array([1.0]))
    samples = buffer.sample(32)
    assert (samples.indices == 3).all()
    # position 1 was rewritten at step 11 (10 + 1): its env 1 holds the code 11 * 2 + 1
    assert (samples.observations == 23).all() and (samples.next_observations == 23.5).all()
    assert (samples.actions == 23).all() and (samples.rewards == 23).all()
    # with spread priorities every field comes from the sampled (pos, env) slot
    buffer.update_priorities(np.arange(20), np.arange(1, 21))
    samples = buffer.sample(256)
    pos, env = np.divmod(samples.indices, 2)
    stored_code = np.where(pos < 3, (pos + 10) * 2 + env, pos * 2 + env)
    np.testing.assert_array_equal(samples.observations[:, 0].numpy(), stored_code)
    np.testing.assert_array_equal(samples.rewards[:, 0].numpy(), stored_code)
    assert len(np.unique(env)) == 2


def test_optimize_memory_usage_is_refused() -> None:
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        make_buffer(optimize_memory_usage=True, handle_timeout_termination=False)


BAD_PRIORITY_ARGUMENTS = [
    ("alpha", -1.0, r"alpha = -1.0 is outside the allowed range \[0, inf\)"),  # would favour the smallest errors
    ("alpha", math.inf, r"alpha = inf is outside"),
    ("alpha", True, r"alpha must be a number in \[0, inf\)"),
    ("beta", math.nan, r"beta = nan is outside the allowed range \[0, 1\]"),  # NaN weights, NaN networks
    ("beta", 1.5, r"beta = 1.5 is outside the allowed range \[0, 1\]"),
    ("beta_final", -0.1, r"beta_final = -0.1 is outside the allowed range \[0, 1\]"),
    ("epsilon", 0.0, r"epsilon = 0.0 is outside the allowed range \(0, inf\)"),  # a zero error: a zero priority
    ("epsilon", -1e-6, r"epsilon = -1e-06 is outside"),  # NaN priorities
    ("epsilon", math.nan, r"epsilon = nan is outside"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_PRIORITY_ARGUMENTS)
def test_bad_priority_arguments_are_refused_at_construction(name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_buffer(**{name: value})
    with pytest.raises(ValueError, match=message):  # not a NaN deep inside training
        PerSAC("MlpPolicy", MicrogridEnv(seed=0), **tiny(replay_buffer_kwargs={name: value}))


@pytest.mark.parametrize(("name", "value", "message"), BAD_PRIORITY_ARGUMENTS)
def test_the_auxiliary_value_replay_refuses_the_same_priority_arguments(name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):  # one check, one message
        AuxiliaryValueReplayCallback(**{name: value})


def test_priority_arguments_at_their_limits_are_taken_as_python_numbers() -> None:
    edges = dict(alpha=np.float32(0.0), beta=np.float64(0.0), beta_final=1, epsilon=1e-300)
    buffer = make_buffer(**edges, beta_steps=np.int64(10))
    assert (buffer.alpha, buffer.beta_initial, buffer.beta_final, buffer.epsilon, buffer.beta_steps) == (0.0, 0.0, 1, 1e-300, 10)
    assert type(buffer.alpha) is float and type(buffer.beta_steps) is int
    aux = AuxiliaryValueReplayCallback(**edges)  # the same ranges, numpy numbers too
    assert (aux.alpha, aux.beta, aux.beta_final, aux.epsilon) == (0.0, 0.0, 1, 1e-300) and type(aux.alpha) is float


@pytest.mark.parametrize(("value", "message"), [(0, r"\[1, inf\)"), (math.nan, "must be an integer"), (2.5, "must be an integer")])
def test_bad_beta_steps_are_refused(value: float, message: str) -> None:
    # a NaN count passed `beta_steps < 1` and made every annealed beta NaN
    with pytest.raises(ValueError, match=f"beta_steps.*{message}"):
        make_buffer(beta_steps=value)


@pytest.mark.parametrize("algo", [PerSAC, PerTD3])
@pytest.mark.parametrize("replay_buffer_kwargs", [None, {"n_steps": 3, "gamma": 0.99}])
def test_n_step_returns_are_refused(algo, replay_buffer_kwargs) -> None:
    # SB3 ignores n_steps with a custom buffer class (1-step targets) and suggests replay_buffer_kwargs the buffer lacks
    with pytest.raises(ValueError, match=rf"{algo.__name__} needs n_steps=1 \(n-step returns are not supported\), got 3"):
        algo("MlpPolicy", MicrogridEnv(seed=0), n_steps=3, **tiny(replay_buffer_kwargs=replay_buffer_kwargs))


def test_per_sac_learn_updates_priorities() -> None:
    model = PerSAC("MlpPolicy", MicrogridEnv(seed=0), **tiny())
    model.learn(200)
    buffer = model.replay_buffer
    leaves = buffer.tree[np.arange(buffer.pos)]
    # untouched leaves would all still hold the initial max priority (1.0)
    assert len(np.unique(leaves)) > 100
    assert buffer.beta > 0.9  # annealed with the training progress


@pytest.mark.parametrize("algo", [SAC, TD3])
def test_plain_sac_td3_with_the_buffer_warn_of_uniform_replay(algo) -> None:
    model = algo("MlpPolicy", MicrogridEnv(seed=0), replay_buffer_class=PrioritizedReplayBuffer, **tiny())
    with pytest.warns(UserWarning, match="no update_priorities"):
        model.learn(60)


@pytest.mark.parametrize("algo", [PerSAC, PerTD3])
def test_per_algorithms_do_not_warn(algo) -> None:
    model = algo("MlpPolicy", MicrogridEnv(seed=0), **tiny())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*no update_priorities.*")
        model.learn(60)
    assert model.replay_buffer.n_sampled >= 10


@pytest.mark.parametrize("algo", [PerSAC, PerTD3])
def test_critic_loss_uses_the_weights(algo, monkeypatch: pytest.MonkeyPatch) -> None:
    model = algo("MlpPolicy", MicrogridEnv(seed=0), **tiny(learning_starts=100))
    model.learn(60)  # fills the buffer, no training yet (fresh Adam: a zero gradient moves nothing)
    sample = model.replay_buffer.sample

    def critic_params() -> list[th.Tensor]:
        return [p.detach().clone() for p in model.critic.parameters()]

    monkeypatch.setattr(model.replay_buffer, "sample", lambda *a, **k: sample(*a, **k)._replace(weights=th.zeros(32, 1)))
    before = critic_params()
    model.train(gradient_steps=1, batch_size=32)
    assert all(th.equal(b, a) for b, a in zip(before, critic_params()))
    monkeypatch.undo()
    model.train(gradient_steps=1, batch_size=32)
    assert not all(th.equal(b, a) for b, a in zip(before, critic_params()))


@pytest.mark.parametrize("algo", [PerSAC, PerTD3])
def test_save_load_round_trip(algo, tmp_path) -> None:
    kwargs = tiny(learning_starts=20, replay_buffer_kwargs=dict(alpha=0.5, beta=0.3))
    model = algo("MlpPolicy", MicrogridEnv(seed=0), **kwargs)
    model.learn(40)
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", env=MicrogridEnv(seed=0))
    assert type(loaded) is algo and isinstance(loaded.replay_buffer, PrioritizedReplayBuffer)
    assert loaded.replay_buffer.alpha == 0.5 and loaded.replay_buffer.beta_initial == 0.3
    obs = MicrogridEnv(seed=1).reset(seed=1)[0]
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(40)


def test_replay_buffer_save_load_keeps_priorities(tmp_path, rng: np.random.Generator) -> None:
    model = PerSAC("MlpPolicy", MicrogridEnv(seed=0), **tiny(learning_starts=100))
    model.learn(30)
    model.replay_buffer.update_priorities(np.arange(30), rng.random(30))
    model.save_replay_buffer(tmp_path / "buffer")
    other = PerSAC("MlpPolicy", MicrogridEnv(seed=0), **tiny())
    other.load_replay_buffer(tmp_path / "buffer")
    np.testing.assert_array_equal(other.replay_buffer.tree.nodes, model.replay_buffer.tree.nodes)
    assert other.replay_buffer.max_priority == model.replay_buffer.max_priority
    assert other.replay_buffer.tree.total > 0 and other.replay_buffer.pos == 30


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("capacity", 1000, "do not fit its capacity 1000: 2048 float64 entries expected"),  # the kernels would write past the nodes
        ("capacity", 0, "capacity must be a positive integer"),
        ("capacity", np.int64(5), "capacity must be a positive integer"),
        ("size", np.array([32768], np.uint16), None),  # size and depth are recomputed, not read (a review's bypass)
        ("nodes", np.zeros(8), "do not fit its capacity 5: 16 float64 entries expected"),
        ("nodes", np.zeros(16, dtype=np.float32), "do not fit"),
        ("nodes", np.frombuffer(bytes(128)), "writable contiguous array"),  # read-only: the kernels write to it
    ],
)
def test_a_pickled_sum_tree_must_fit_what_its_compiled_loops_trust(field, value, message) -> None:
    tree = SumTree(5)
    tree.update(np.arange(5), np.ones(5))
    tree.__dict__[field] = value
    payload = pickle.dumps(tree, protocol=5)  # a read-only array stays read-only
    if message is None:
        restored = loads(payload)
        assert restored.size == 8 and restored.total == 5.0
        return
    with pytest.raises(ValueError, match=message):
        pickle.loads(payload)
    with pytest.raises(ValueError, match=message):
        loads(payload)  # the restricted reader runs the same check


def nodes_with(index: int, value: float) -> np.ndarray:
    tree = SumTree(5)
    tree.update(np.arange(5), np.arange(1.0, 6.0))
    tree.nodes[index] = value
    return tree.nodes


@pytest.mark.parametrize(
    "nodes, message",
    [
        (nodes_with(9, np.nan), "priorities must be finite and >= 0"),
        (nodes_with(9, -1.0), "priorities must be finite and >= 0"),
        (nodes_with(1, np.inf), "priorities must be finite and >= 0"),
        (nodes_with(14, 1.0), "0 past its capacity"),  # leaf 6 of capacity 5: drawn though no item is there
        (nodes_with(1, 1e6), "the sum of their two children"),  # the root: every draw lands on the last item
        (nodes_with(3, 0.0), "the sum of their two children"),
    ],
)
def test_a_pickled_sum_tree_must_hold_the_priorities_its_updates_keep(nodes, message) -> None:
    tree = SumTree(5)
    tree.nodes = nodes
    with pytest.raises(ValueError, match=message):
        loads(pickle.dumps(tree))


@pytest.mark.parametrize(
    "field, value, message",
    [("alpha", -1.0, "alpha"), ("beta_initial", np.nan, "beta"), ("beta_final", 2.0, "beta_final"), ("epsilon", 0.0, "epsilon"),
     ("beta_steps", 0, "beta_steps"), ("max_priority", np.inf, "max_priority"), ("progress", np.nan, "progress")],
)  # fmt: skip
def test_a_pickled_prioritized_buffer_checks_its_arguments_as_the_constructor_does(field, value, message) -> None:
    """A resumed run trained on them: a NaN beta made the networks NaN, alpha -1 reversed the prioritisation."""
    buffer = make_buffer(16)
    fill(buffer, 5)
    setattr(buffer, field, value)
    with pytest.raises(ValueError, match=f"a pickled PrioritizedReplayBuffer: {message}"):
        loads(pickle.dumps(buffer))


def test_a_pickled_prioritized_buffer_round_trips_and_its_tree_must_fit_its_storage() -> None:
    buffer = make_buffer(16, n_envs=2)
    fill(buffer, 5)
    restored = loads(pickle.dumps(buffer))
    np.testing.assert_array_equal(restored.tree.nodes, buffer.tree.nodes)
    restored.add(*(np.zeros((2, 3)),) * 2, np.zeros((2, 2)), np.zeros(2), np.zeros(2), [{}] * 2)
    buffer.tree = SumTree(8)
    with pytest.raises(ValueError, match=r"capacity buffer_size \* n_envs \(8 \* 2\)"):
        loads(pickle.dumps(buffer))


def test_a_sum_tree_whose_fields_disagree_refuses_to_update_instead_of_writing_past_its_nodes() -> None:
    tree = SumTree(5)
    tree.capacity = 1 << 20  # as a class swap in a crafted file did, skipping __setstate__
    with pytest.raises(ValueError, match="do not fit its capacity 1048576"):
        tree.update_one((1 << 20) - 1, 1.0)
    with pytest.raises(ValueError, match="do not fit"):
        tree.update(np.array([(1 << 20) - 1]), np.ones(1))
    tree.capacity, tree.nodes = 5, np.ones(24)  # 12 leaves: the search would walk past the nodes
    with pytest.raises(ValueError, match="do not fit its capacity 5"):
        tree.sample_stratified(4, np.random.default_rng(0))


def test_a_pickled_sum_tree_with_a_key_that_hides_a_method_is_refused_by_both_readers() -> None:
    tree = SumTree(5)
    tree.__dict__["update"] = None
    payload = pickle.dumps(tree)
    with pytest.raises(ValueError, match="holds capacity, size and nodes"):
        pickle.loads(payload)
    with pytest.raises(ValueError, match="'update' for SumTree: it is not data"):
        loads(payload)  # the restricted reader refuses it before SumTree's own check


def test_a_sum_tree_of_a_numpy_capacity_round_trips() -> None:
    tree = SumTree(np.int64(5))
    assert type(tree.capacity) is int and pickle.loads(pickle.dumps(tree)).capacity == 5


def test_set_progress_refuses_a_fraction_that_is_not_a_finite_number() -> None:
    """max(nan, 0.0) is nan in Python: the clip let it through and beta became NaN."""
    buffer = make_buffer()
    buffer.set_progress(2.0)
    assert buffer.progress == 1.0
    for bad in (math.nan, math.inf, "0.5"):
        with pytest.raises(ValueError, match="fraction"):
            buffer.set_progress(bad)
    assert buffer.progress == 1.0
