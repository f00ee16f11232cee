"""Prioritized replay speed: our sum tree, a full prioritized sample, and a PerSAC training step, all in one run.

Three comparisons, each timed ``--repeats`` times (medians reported):

1. sample + priority-update cycles per second of :class:`~sb3_microgrid.buffers.SumTree` against the tutorial-style
   tree below (``TutorialSumTree``, the reference: recursive propagation one parent at a time, one item sampled at a
   time), capacity 1,000,000, batch 256 and 1024;
2. a full prioritized ``sample`` (tree + weights + data gather) plus ``update_priorities`` against SB3's uniform
   ``ReplayBuffer.sample`` on the same stored data (full 1,000,000-transition buffer, the env's observation and
   action sizes), and the buffer's tree alone (sample + update) to show its share of the prioritized cycle;
3. ``PerSAC.train`` against ``SAC.train`` (``--gradient-steps`` steps, batch 256, filled buffer, one torch thread).

Within each comparison the competitors take turns in every repeat, and each ratio is the median over repeats of
the ratio within a repeat (``paired_ratio``), so a burst of load from other jobs hits both sides of a ratio.

Results go to ``benchmarks/results/replay_speed.{json,md}`` with the command that produced them.

Usage: python benchmarks/replay_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch as th
from reporting import run_metadata, write_results
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.logger import configure

from sb3_microgrid import MicrogridEnv
from sb3_microgrid.buffers import PrioritizedReplayBuffer, SumTree
from sb3_microgrid.per_sac import PerSAC

CAPACITY = 1_000_000
BATCH_SIZES = (256, 1024)


class TutorialSumTree:
    """
    REFERENCE ONLY (the design we compare against, not used by the package): the classic tutorial sum tree, with
    the root at 0, a recursive propagation of each change one parent at a time, and one item sampled at a time.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.tree = np.zeros(2 * capacity - 1)

    def _propagate(self, node: int, change: float) -> None:
        parent = (node - 1) // 2
        self.tree[parent] += change
        if parent != 0:
            self._propagate(parent, change)

    def _retrieve(self, node: int, value: float) -> int:
        left = 2 * node + 1
        if left >= len(self.tree):
            return node
        if value <= self.tree[left]:
            return self._retrieve(left, value)
        return self._retrieve(left + 1, value - self.tree[left])

    def total(self) -> float:
        return self.tree[0]

    def update(self, index: int, priority: float) -> None:
        node = index + self.capacity - 1
        change = priority - self.tree[node]
        self.tree[node] = priority
        self._propagate(node, change)

    def sample(self, batch_size: int) -> list[int]:
        segment = self.total() / batch_size
        return [self._retrieve(0, (i + np.random.random()) * segment) - self.capacity + 1 for i in range(batch_size)]


def median_rates(cycles: dict[str, tuple[Callable[[], object], int]], repeats: int) -> dict[str, tuple[float, list[float]]]:
    """
    Median (and all) calls per second of each ``name: (cycle, n_calls)`` over ``repeats`` timings of ``n_calls`` calls.

    The competitors take turns within each repeat, so a burst of load from other jobs on the shared machine hits
    all of them rather than whichever happened to be running.
    """
    for cycle, _ in cycles.values():
        cycle()  # warm-up (and numba compilation)
    rates: dict[str, list[float]] = {name: [] for name in cycles}
    for _ in range(repeats):
        for name, (cycle, n_calls) in cycles.items():
            start = time.perf_counter()
            for _ in range(n_calls):
                cycle()
            rates[name].append(n_calls / (time.perf_counter() - start))
    return {name: (statistics.median(all_rates), all_rates) for name, all_rates in rates.items()}


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """
    Median over repeats of the ratio of two rates timed back to back in the same repeat.

    A burst of load from other jobs slows both terms of one repeat's ratio, so it mostly cancels, where a ratio of
    two separate medians can set a quiet timing of one competitor against a loaded timing of the other.
    """
    return statistics.median(n / d for n, d in zip(numerators, denominators))


def bench_trees(repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    priorities = rng.random(CAPACITY)
    ours = SumTree(CAPACITY)
    ours.update(np.arange(CAPACITY), priorities)
    reference = TutorialSumTree(CAPACITY)
    reference.tree[CAPACITY - 1 :] = priorities
    # set-up only: fill the reference's parents in vectorized chunks whose children are all final
    end = CAPACITY - 1
    while end > 0:
        nodes = np.arange(end // 2, end)
        reference.tree[nodes] = reference.tree[2 * nodes + 1] + reference.tree[2 * nodes + 2]
        end //= 2

    rows = []
    for batch_size in BATCH_SIZES:
        new_priorities = rng.random(batch_size)

        def ours_cycle() -> None:
            ours.update(ours.sample_stratified(batch_size, rng), new_priorities)

        def reference_cycle() -> None:
            for index, priority in zip(reference.sample(batch_size), new_priorities):
                reference.update(index, priority)

        rates = median_rates({"ours": (ours_cycle, 1000), "reference": (reference_cycle, 10)}, repeats)
        (ours_rate, ours_all), (ref_rate, ref_all) = rates["ours"], rates["reference"]
        rows.append(dict(batch_size=batch_size, sum_tree_cycles_per_s=ours_rate, tutorial_cycles_per_s=ref_rate,
                         ratio=paired_ratio(ours_all, ref_all), sum_tree_all=ours_all, tutorial_all=ref_all))
    return rows


def filled_buffers() -> tuple[ReplayBuffer, PrioritizedReplayBuffer]:
    """A full uniform and a full prioritized buffer sharing the same stored transitions (random, so no page is empty)."""
    env = MicrogridEnv()
    rng = np.random.default_rng(0)
    uniform = ReplayBuffer(CAPACITY, env.observation_space, env.action_space, device="cpu")
    prioritized = PrioritizedReplayBuffer(CAPACITY, env.observation_space, env.action_space, device="cpu")
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        array = getattr(uniform, name)
        array[:] = rng.random(array.shape, dtype=np.float32) if name not in ("dones", "timeouts") else 0.0
        setattr(prioritized, name, array)
    uniform.full = prioritized.full = True
    prioritized.update_priorities(np.arange(CAPACITY), rng.normal(size=CAPACITY))
    return uniform, prioritized


def bench_buffers(repeats: int) -> list[dict]:
    uniform, prioritized = filled_buffers()
    rng = np.random.default_rng(1)
    rows = []
    for batch_size in BATCH_SIZES:
        td_errors = th.as_tensor(rng.normal(size=batch_size), dtype=th.float32)

        def per_cycle() -> None:
            samples = prioritized.sample(batch_size)
            prioritized.update_priorities(samples.indices, td_errors)

        # the tree alone, timed between the full cycles (so with the same cache state), shows its share of them
        td_priorities = (np.abs(td_errors.numpy()) + prioritized.epsilon) ** prioritized.alpha

        def tree_cycle() -> None:
            prioritized.tree.update(prioritized.tree.sample_stratified(batch_size, rng), td_priorities)

        rates = median_rates(
            {"per": (per_cycle, 200), "uniform": (lambda: uniform.sample(batch_size), 200), "tree": (tree_cycle, 200)}, repeats
        )
        (per_rate, per_all), (uniform_rate, uniform_all), (tree_rate, tree_all) = rates["per"], rates["uniform"], rates["tree"]
        rows.append(dict(batch_size=batch_size, per_sample_update_per_s=per_rate, uniform_sample_per_s=uniform_rate,
                         ratio=paired_ratio(per_all, uniform_all), tree_sample_update_per_s=tree_rate,
                         tree_share=paired_ratio(per_all, tree_all),
                         per_all=per_all, uniform_all=uniform_all, tree_all=tree_all))
    return rows


def bench_training(repeats: int, gradient_steps: int, buffer_size: int) -> dict:
    th.set_num_threads(1)
    rng = np.random.default_rng(2)
    cycles = {}
    for algo in (SAC, PerSAC):
        model = algo("MlpPolicy", MicrogridEnv(), buffer_size=buffer_size, batch_size=256, seed=0, device="cpu")
        model.set_logger(configure(None, []))
        buffer = model.replay_buffer
        for name in ("observations", "next_observations", "actions", "rewards"):
            array = getattr(buffer, name)
            array[:] = rng.uniform(-1, 1, size=array.shape).astype(array.dtype)
        buffer.full = True
        if isinstance(buffer, PrioritizedReplayBuffer):
            buffer.update_priorities(np.arange(buffer.buffer_size), rng.normal(size=buffer.buffer_size))
        cycles[algo.__name__] = (lambda model=model: model.train(gradient_steps, batch_size=256), 1)
    rates = median_rates(cycles, repeats)
    sac, per_sac = rates["SAC"][0], rates["PerSAC"][0]
    return dict(gradient_steps=gradient_steps, buffer_size=buffer_size, batch_size=256,
                sac_step_ms=1e3 / (sac * gradient_steps), per_sac_step_ms=1e3 / (per_sac * gradient_steps),
                slowdown=paired_ratio(rates["SAC"][1], rates["PerSAC"][1]) - 1, sac_all=rates["SAC"][1], per_sac_all=rates["PerSAC"][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gradient-steps", type=int, default=100)
    parser.add_argument("--train-buffer-size", type=int, default=100_000)
    args = parser.parse_args()

    trees = bench_trees(args.repeats)
    buffers = bench_buffers(args.repeats)
    training = bench_training(args.repeats, args.gradient_steps, args.train_buffer_size)

    meta = run_metadata(repeats=args.repeats, capacity=CAPACITY)
    lines = [
        "# Prioritized replay speed",
        "",
        f"Command: `{meta['command']}` ({meta['time']}, Python {meta['python']}, {meta['cpus']} CPUs; shared machine, "
        f"rates are medians of {args.repeats} repeats, ratios medians of the {args.repeats} per-repeat ratios of "
        "competitors timed back to back).",
        "",
        f"## Sum tree, capacity {CAPACITY:,}: sample + priority update cycles/s (target: >= 30x the tutorial tree)",
        "",
        "| batch | SumTree | tutorial tree (reference) | ratio |",
        "|---:|---:|---:|---:|",
        *(f"| {r['batch_size']} | {r['sum_tree_cycles_per_s']:,.0f} | {r['tutorial_cycles_per_s']:,.1f} | {r['ratio']:.1f}x |" for r in trees),
        "",
        f"## Full buffer ({CAPACITY:,} transitions, obs 206, action 13): prioritized sample + update_priorities "
        "vs SB3 uniform sample, calls/s (target: ratio >= 0.8)",
        "",
        "| batch | PrioritizedReplayBuffer | ReplayBuffer | ratio | tree alone (sample + update) | tree share of the prioritized cycle |",
        "|---:|---:|---:|---:|---:|---:|",
        *(f"| {r['batch_size']} | {r['per_sample_update_per_s']:,.0f} | {r['uniform_sample_per_s']:,.0f} | {r['ratio']:.2f} "
          f"| {r['tree_sample_update_per_s']:,.0f} | {100 * r['tree_share']:.0f} % |" for r in buffers),
        "",
        f"## Training step, batch 256, {training['gradient_steps']} gradient steps on a filled {training['buffer_size']:,}-transition "
        "buffer, 1 torch thread (target: PerSAC <= 15 % slower)",
        "",
        "| SAC ms/step | PerSAC ms/step | PerSAC slowdown |",
        "|---:|---:|---:|",
        f"| {training['sac_step_ms']:.2f} | {training['per_sac_step_ms']:.2f} | {100 * training['slowdown']:+.1f} % |",
    ]
    write_results("replay_speed", meta, {"sum_tree": trees, "buffer": buffers, "training": training}, lines)


if __name__ == "__main__":
    main()
