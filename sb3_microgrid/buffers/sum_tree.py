"""Array-backed sum tree whose batched search and update are numba-compiled loops over the tree levels."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from numba import njit


@njit(cache=True)
def _descend(nodes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """
    Leaf (item) index of each prefix-sum query, walking all queries down one level at a time.

    Going level by level over the whole batch keeps up to ``len(values)`` independent reads of the next level in
    flight, instead of one dependent chain of reads per query, which is what the deep, cache-missing levels need.
    The step is branchless (a mispredicted coin-flip branch per level and query costs more than the arithmetic),
    and it only ever enters a child with a positive sum: a query at or past a subtree's end, by rounding or because
    it lies outside ``[0, total)``, ends on the last (first) positive leaf instead of an empty one.

    :param nodes: the tree (root at 1, leaves at ``[size, 2 * size)``)
    :param values: queries, consumed (overwritten with their remainders)
    :return: item indices
    """
    size = nodes.size // 2
    found = np.ones(values.size, dtype=np.int64)
    width = 1
    while width < size:
        for i in range(values.size):
            node = 2 * found[i]
            left = nodes[node]
            go_right = ((values[i] >= left) & (nodes[node + 1] > 0.0)) | (left <= 0.0)
            values[i] -= left * go_right
            found[i] = node + go_right
        width *= 2
    return found - size


@njit(cache=True)
def _update(nodes: np.ndarray, capacity: int, indices: np.ndarray, priorities: np.ndarray) -> bool:
    """
    Write the leaves in batch order (so the last write of a repeated index wins), then recompute their ancestors one
    level at a time. Parents are re-summed from their children rather than shifted by a delta, so rounding errors
    never accumulate; a parent shared by several items is recomputed several times from the same final children.

    :param nodes: the tree, modified in place
    :param capacity: number of items
    :param indices: item indices
    :param priorities: their priorities
    :return: ``False``, with the tree untouched, when an index is outside ``[0, capacity)`` or a priority is
        negative, infinite or NaN (the loop does not bounds-check, so nothing is written before all are checked)
    """
    for i in range(indices.size):
        if not (0 <= indices[i] < capacity and 0.0 <= priorities[i] < np.inf):
            return False
    size = nodes.size // 2
    parents = np.empty(indices.size, dtype=np.int64)
    for i in range(indices.size):
        nodes[indices[i] + size] = priorities[i]
        parents[i] = (indices[i] + size) // 2
    width = size // 2
    while width >= 1:
        for i in range(indices.size):
            node = parents[i]
            nodes[node] = nodes[2 * node] + nodes[2 * node + 1]
            parents[i] = node // 2
        width //= 2
    return True


@njit(cache=True)
def _update_one(nodes: np.ndarray, index: int, priority: float) -> None:
    """Scalar :func:`_update`: one leaf and its path to the root, without any array allocation."""
    node = index + nodes.size // 2
    nodes[node] = priority
    node //= 2
    while node >= 1:
        nodes[node] = nodes[2 * node] + nodes[2 * node + 1]
        node //= 2


def _leaves(capacity: int) -> int:
    """Leaves of a tree of ``capacity`` items: the next power of two."""
    return 1 << (int(capacity) - 1).bit_length()


class SumTree:
    """
    Complete binary tree of non-negative priorities, stored in one float64 array.

    Node ``1`` is the root, node ``i`` has children ``2i`` and ``2i + 1`` and the ``capacity`` leaves sit at
    ``[size, size + capacity)``, ``size`` being the next power of two (the padding leaves stay at zero, so they are
    never sampled). Batched search and update are compiled loops over the ``log2(size)`` levels, each level handled
    for the whole batch at once. float64 throughout: float32 was no faster here (measured, see
    ``docs/replay_per.md``) and would round the stored priorities.

    :param capacity: number of leaves (items)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = operator.index(capacity)  # a plain int, as a pickled tree must hold
        self.size = _leaves(capacity)
        self.nodes = np.zeros(2 * self.size, dtype=np.float64)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled tree, checking the layout that the compiled loops trust (they do not bounds-check):
        ``size`` is recomputed from ``capacity``, and ``nodes`` must have ``2 * size`` float64 entries. (Trees pickled
        before held a ``depth`` too, which is ignored.)

        :raises ValueError: naming the field that does not fit
        """
        capacity, nodes = state.get("capacity"), state.get("nodes")
        if not {"capacity", "nodes"} <= set(state) <= {"capacity", "size", "depth", "nodes"}:
            raise ValueError(f"a pickled SumTree holds capacity, size and nodes, got {sorted(map(str, state))}")
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"a pickled SumTree's capacity must be a positive integer, got {capacity!r}")
        if not (isinstance(nodes, np.ndarray) and nodes.flags.c_contiguous and nodes.flags.writeable):
            raise ValueError("a pickled SumTree's nodes must be a writable contiguous array")
        self.capacity, self.size, self.nodes = capacity, _leaves(capacity), nodes
        self._check_layout()
        # What the updates keep true, which sampling trusts: a NaN or negative priority, or a parent that is not the
        # sum of its children (the updates re-sum parents exactly), would draw items out of proportion or none at all.
        leaves = nodes[self.size :]
        if not (np.isfinite(nodes[1:]).all() and (leaves >= 0).all() and not leaves[capacity:].any()):
            raise ValueError("a pickled SumTree's priorities must be finite and >= 0, and 0 past its capacity")
        if not np.array_equal(nodes[1 : self.size], nodes[2 : 2 * self.size : 2] + nodes[3 : 2 * self.size : 2]):
            raise ValueError("a pickled SumTree's inner nodes must each be the sum of their two children")

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
        :param priorities: non-negative finite priorities, same length as ``indices``
        """
        # one dtype and layout, so that the kernel compiles once
        indices = np.ascontiguousarray(indices, dtype=np.int64).ravel()
        priorities = np.ascontiguousarray(priorities, dtype=np.float64).ravel()
        if indices.size != priorities.size:
            raise ValueError(f"indices and priorities must have the same length, got {indices.size} and {priorities.size}")
        self._check_layout()
        if not _update(self.nodes, self.capacity, indices, priorities):
            raise ValueError(
                f"indices must be in [0, {self.capacity}) and priorities finite and >= 0, got indices in "
                f"[{indices.min()}, {indices.max()}] and priorities in [{priorities.min()}, {priorities.max()}]"
            )

    def update_one(self, index: int, priority: float) -> None:
        """
        Set the priority of one item (scalar path, cheaper than :meth:`update` for a single item).

        :param index: item index in ``[0, capacity)``
        :param priority: non-negative finite priority
        """
        if not 0 <= index < self.capacity:
            raise ValueError(f"index must be in [0, {self.capacity}), got {index}")
        if self.capacity > self.nodes.size // 2:  # the kernel writes leaf index + nodes.size // 2 unchecked
            self._check_layout()
        if not 0 <= priority < np.inf:
            raise ValueError(f"priority must be finite and >= 0, got {priority}")
        _update_one(self.nodes, int(index), float(priority))

    def find_prefix_sum(self, values: np.ndarray) -> np.ndarray:
        """
        For each value ``v`` in ``[0, total)``, the smallest item index ``i`` whose inclusive prefix sum exceeds ``v``.

        Only items with a positive priority are returned, even when rounding puts ``v`` at the very end of the range.

        :param values: query values
        :return: item indices, same shape as ``values``
        """
        self._check_positive_total()
        values = np.array(values, dtype=np.float64)  # a copy: the search consumes it
        return _descend(self.nodes, values.ravel()).reshape(values.shape)

    def sample_stratified(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """
        Draw ``batch_size`` items with probability proportional to priority, one uniform draw per equal segment of
        the total (lower variance than independent draws).

        :param batch_size: number of items
        :param rng: random generator
        :return: item indices
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self._check_positive_total()
        values = rng.random(batch_size)
        values += np.arange(batch_size)
        values *= self.total / batch_size
        return _descend(self.nodes, values)

    def _check_layout(self) -> None:
        """The compiled loops index the nodes without a bounds check (the updates write leaf ``index + nodes.size // 2``
        for every index below ``capacity``, the search assumes a power-of-two size): refuse to run them on a tree whose
        fields were changed to disagree, as a crafted file tried."""
        if not (type(self.nodes) is np.ndarray and self.nodes.dtype == np.float64 and self.nodes.shape == (2 * _leaves(self.capacity),)):
            raise ValueError(f"this SumTree's nodes do not fit its capacity {self.capacity}: {2 * _leaves(self.capacity)} float64 entries expected")

    def _check_positive_total(self) -> None:
        self._check_layout()  # the search, too, walks log2(nodes.size // 2) levels unchecked
        if not self.total > 0:
            raise ValueError(f"Cannot search a sum tree whose priorities are all zero (total {self.total})")
