"""Array-backed sum tree with batched (numpy-vectorized) updates and prefix-sum queries."""

from __future__ import annotations

import numpy as np

# a tree level with at most this many nodes per item of the batch is processed whole (dense) rather than per item
_DENSE_FACTOR = 16


class SumTree:
    """
    Complete binary tree of non-negative priorities, stored in one float64 array.

    Node ``1`` is the root, node ``i`` has children ``2i`` and ``2i + 1`` and the ``capacity`` leaves sit at
    ``[size, size + capacity)``, ``size`` being the next power of two (the padding leaves stay at zero, so they are
    never sampled). Batched operations work on all items at once and loop only over the ``log2(size)`` levels.
    Parents are recomputed as the sum of their children rather than shifted by a delta, so rounding errors do not
    accumulate over millions of updates.

    :param capacity: number of leaves (items)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.size = 1 << max(int(np.ceil(np.log2(capacity))), 0)
        self.depth = self.size.bit_length() - 1
        self.nodes = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all priorities."""
        return float(self.nodes[1])

    def __getitem__(self, indices: np.ndarray | int) -> np.ndarray | float:
        """Priorities of the items ``indices``."""
        return self.nodes[np.asarray(indices) + self.size]

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """
        Set the priorities of a batch of items; when an index repeats, its last priority wins.

        :param indices: item indices in ``[0, capacity)``
        :param priorities: non-negative priorities, same length as ``indices``
        """
        indices = np.asarray(indices, dtype=np.int64).ravel()
        priorities = np.asarray(priorities, dtype=np.float64).ravel()
        # np.unique on the reversed batch keeps the first occurrence, i.e. the last write; fancy assignment with
        # repeated indices has no guaranteed order
        nodes, first = np.unique(indices[::-1] + self.size, return_index=True)
        self.nodes[nodes] = priorities[::-1][first]
        # Sparse pass over the deep levels: only the ancestors of the updated leaves. Repeated parents are harmless
        # (each write computes the same sum from final children), so no deduplication is needed. Once a level is
        # narrow enough, recomputing it whole (one strided add) is cheaper than gathering the batch's nodes.
        width = self.size
        while width > 1 and width > _DENSE_FACTOR * len(nodes):
            nodes >>= 1
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]
            width >>= 1
        while width > 1:
            np.add(self.nodes[width : 2 * width : 2], self.nodes[width + 1 : 2 * width : 2], out=self.nodes[width // 2 : width])
            width >>= 1

    def update_one(self, index: int, priority: float) -> None:
        """
        Set the priority of one item (scalar path, cheaper than :meth:`update` for a single item).

        :param index: item index in ``[0, capacity)``
        :param priority: non-negative priority
        """
        node = int(index) + self.size
        nodes = self.nodes
        nodes[node] = priority
        node >>= 1
        while node:
            nodes[node] = nodes[2 * node] + nodes[2 * node + 1]
            node >>= 1

    def find_prefix_sum(self, values: np.ndarray) -> np.ndarray:
        """
        For each value ``v`` in ``[0, total)``, the smallest item index ``i`` whose inclusive prefix sum exceeds ``v``.

        Only items with a positive priority are returned, even when rounding puts ``v`` at the very end of the range.

        :param values: query values
        :return: item indices, same shape as ``values``
        """
        values = np.array(values, dtype=np.float64)
        # The top levels are resolved at once: a search in the prefix sums of one narrow level (cheap, it has at
        # most _DENSE_FACTOR nodes per query) replaces that many iterations of the descent.
        level = min(self.depth, max(int(np.ceil(np.log2(_DENSE_FACTOR * max(values.size, 1)))), 0))
        cumsum = np.cumsum(self.nodes[1 << level : 2 << level])
        offsets = np.minimum(np.searchsorted(cumsum, values, side="right"), cumsum.size - 1)
        remainders = values - np.where(offsets > 0, cumsum[offsets - 1], 0.0)
        nodes = self._descend(offsets + (1 << level), remainders, self.depth - level, guard_empty=False)
        # Rounding can carry a value past the last positive leaf of a subtree into an empty one (rare, only at
        # segment ends): redo those queries from the root with the guarded descent.
        empty = self.nodes[nodes] <= 0
        if empty.any():
            nodes[empty] = self._descend(np.ones(empty.sum(), dtype=np.int64), values[empty], self.depth, guard_empty=True)
        return nodes - self.size

    def _descend(self, nodes: np.ndarray, values: np.ndarray, levels: int, guard_empty: bool) -> np.ndarray:
        """
        Walk each query ``levels`` levels down from ``nodes``, one level of the whole batch per iteration.

        :param nodes: start nodes (modified in place)
        :param values: remaining prefix sums within the start nodes (modified in place)
        :param levels: number of levels to descend
        :param guard_empty: never step into an empty right subtree
        :return: the reached nodes
        """
        for _ in range(levels):
            nodes <<= 1
            left_sum = self.nodes[nodes]
            go_right = values >= left_sum
            if guard_empty:
                go_right &= self.nodes[nodes + 1] > 0
            np.subtract(values, left_sum, out=values, where=go_right)
            nodes += go_right
        return nodes

    def sample_stratified(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """
        Draw ``batch_size`` items with probability proportional to priority, one uniform draw per equal segment of
        the total (lower variance than independent draws).

        :param batch_size: number of items
        :param rng: random generator
        :return: item indices
        """
        total = self.total
        if total <= 0:
            raise ValueError("Cannot sample from a sum tree whose priorities are all zero")
        segment = total / batch_size
        return self.find_prefix_sum((np.arange(batch_size) + rng.random(batch_size)) * segment)
