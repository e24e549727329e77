"""Tree ensembles (histogram gradient boosting, random forest) as flat numpy node arrays.

Every tree of an ensemble is stacked into one set of node arrays, and all trees and all
rows descend one level per numpy step: the per-tree Python loop of sklearn's predict is
what costs the time for the few rows of a request. Trees of depth 3 at most (the default
gradient boosting) skip even the level steps: each becomes a complete 8-slot heap whose
split outcomes, packed into one byte, index a table of leaves. `tree_responses.py` reads
fitted sklearn models into these layouts.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# A model's response to imputed rows, already in the form the temperature scaler scales.
Response = Callable[[np.ndarray], np.ndarray]

# sklearn.calibration._convert_to_logits turns probabilities into log(p + eps).
EPS = 1e-12


def decision_logits(decision: np.ndarray) -> np.ndarray:
    """sklearn's test on a multiclass decision_function: does it look like probabilities?

    If every value is in [0, 1] and every row sums to 1, sklearn takes logs, as for a
    predict_proba. Real decision values practically never pass, so the cheap minimum
    test comes first.
    """
    if (
        np.minimum.reduce(decision, axis=None) >= 0
        and np.maximum.reduce(decision, axis=None) <= 1
        and np.isclose(np.add.reduce(decision, axis=1), 1.0, rtol=1e-5, atol=1e-8).all()
    ):
        return np.log(decision + EPS)
    return decision


@dataclass(frozen=True)
class Tree:
    """One tree in sklearn's own numbering: root 0, x <= threshold goes left."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray  # (n_nodes, n_outputs)


@dataclass(frozen=True)
class Stack:
    """All trees of an ensemble as flat node arrays, walked together level by level.

    Nodes are renumbered so that every right child directly follows its left child: one
    level is then `node = left[node] + (x[feature[node]] > threshold[node])`. A leaf is
    its own left child with threshold +inf, so a tree that has reached its leaf stays
    there. Trees are sorted deepest first and `active[d]` counts the trees deeper than d:
    level d only moves that prefix, so shallow trees stop costing work early.
    Tree i of the sorted order starts at node i.
    """

    feature: np.ndarray  # intp
    threshold: np.ndarray  # float64
    left: np.ndarray  # intp
    value: np.ndarray  # (n_nodes, n_outputs)
    rank: np.ndarray  # position of tree i in the sorted order
    roots: np.ndarray  # arange(n_trees), intp
    active: tuple[int, ...]
    n_features: int
    # Which block of input rows each sorted tree reads: the fold it belongs to, when the
    # trees of several fold models are walked together (each fold scales its input).
    block: np.ndarray
    n_blocks: int
    # For one row per block: each node's feature as an index into the blocks laid end
    # to end (feature + block * n_features), so a level needs no per-call offsets.
    feature_in_blocks: np.ndarray

    def leaves(self, z: np.ndarray) -> np.ndarray:
        """Leaf node of every (tree, row): shape (n_trees, n_rows). With several blocks,
        `z` holds each block's rows one after the other."""
        n_rows = z.shape[0] // self.n_blocks
        flat = z.ravel()
        node = np.repeat(self.roots, n_rows).reshape(-1, n_rows)
        feature = self.feature_in_blocks if n_rows == 1 else self.feature
        base: np.ndarray | None = None
        if n_rows > 1:
            base = (self.block[:, None] * n_rows + np.arange(n_rows)) * self.n_features
        # ndarray methods, not np.take: the wrapper's overhead is felt at one row.
        for count in self.active:
            current = node[:count]
            index = feature.take(current)
            if base is not None:
                index += base[:count]
            right = flat.take(index) > self.threshold.take(current)
            np.add(self.left.take(current), right, out=current)
        return node

    def leaf_values(self, z: np.ndarray) -> np.ndarray:
        """The single-output leaf value of every (tree, row), trees in the order given."""
        return np.take(self.value[:, 0], self.leaves(z)[self.rank])


# A shallow tree is a complete heap of depth 3: slots 0-6 are splits (slot s has children
# 2s+1 and 2s+2), slot 7 is padding, and 8 leaves follow. A real leaf above depth 3 fills
# every leaf below it, under splits that always go left (threshold +inf).
SHALLOW_DEPTH = 3
_SPLIT_SLOTS = 2**SHALLOW_DEPTH - 1
_SLOTS = _SPLIT_SLOTS + 1
# Packs the 8 one-byte split outcomes of a slot block, viewed as one uint64, into one byte:
# the product puts outcome byte j at bit 7 - j of the top byte, with no carries between.
_PACK = np.uint64(0x8040201008040201)
_SHIFT = np.uint64(56)


def _packed(outcomes: np.ndarray) -> np.ndarray:
    """One code per block of 8 bool split outcomes (the last axis)."""
    return (outcomes.view(np.uint64)[..., 0] * _PACK) >> _SHIFT


def _leaf_table() -> np.ndarray:
    """The leaf (0-7) a heap's descent reaches, for each packed code of its outcomes."""
    patterns = ((np.arange(256)[:, None] >> np.arange(_SLOTS)) & 1).astype(bool)
    codes = _packed(patterns)
    if len(np.unique(codes)) != 256:
        raise RuntimeError("split outcomes do not pack into distinct codes")
    table = np.zeros(256, dtype=np.intp)
    for pattern, code in zip(patterns, codes.tolist(), strict=True):
        slot = 0
        for _ in range(SHALLOW_DEPTH):
            slot = 2 * slot + 1 + int(pattern[slot])
        table[code] = slot - _SPLIT_SLOTS
    return table


_LEAF_OF_CODE = _leaf_table()


@dataclass(frozen=True)
class Shallow:
    """Single-output trees of depth <= 3 as heaps: every distinct split is compared once,
    in one numpy step, each heap slot picks up its outcome, and a table lookup replaces the
    descent. Trees keep the order given."""

    # The distinct (feature, threshold) splits; features index the blocks laid end to end
    # (feature + block * n_features), as in Stack. Padding slots are splits at +inf.
    split_feature: np.ndarray  # intp
    split_threshold: np.ndarray
    split_of_slot: np.ndarray  # (n_trees * 8,) intp: each slot's distinct split
    value: np.ndarray  # (n_trees * 8,): leaf values, 8 per tree
    leaf_base: np.ndarray  # (n_trees,) intp: 8 * tree
    n_blocks: int
    n_features: int

    def leaf_values(self, z: np.ndarray) -> np.ndarray:
        """Leaf value of every (tree, row); `z` holds each block's rows one after the other."""
        n_rows = z.shape[0] // self.n_blocks
        # Each row's blocks side by side, as `split_feature` indexes them.
        blocks = z.reshape(self.n_blocks, n_rows, self.n_features)
        if n_rows > 1:
            blocks = blocks.transpose(1, 0, 2)
        rows = blocks.reshape(n_rows, self.n_blocks * self.n_features)
        split_right = rows.take(self.split_feature, axis=1) > self.split_threshold
        right = split_right.take(self.split_of_slot, axis=1)
        leaf = _LEAF_OF_CODE.take(_packed(right.reshape(n_rows, -1, _SLOTS)))
        leaf += self.leaf_base
        return self.value.take(leaf).T


def _heap(tree: Tree) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(feature, threshold, leaf values) of a tree as a depth-3 heap, or None if deeper."""
    feature = np.zeros(_SLOTS, dtype=np.intp)
    threshold = np.full(_SLOTS, np.inf)
    value = np.zeros(_SLOTS)
    pending = [(0, 0)]  # (node, slot)
    while pending:
        node, slot = pending.pop()
        leaf = bool(tree.is_leaf[node])
        if slot >= _SPLIT_SLOTS:
            if not leaf:
                return None
            value[slot - _SPLIT_SLOTS] = tree.value[node, 0]
        elif leaf:
            pending += [(node, 2 * slot + 1), (node, 2 * slot + 2)]
        else:
            feature[slot] = tree.feature[node]
            threshold[slot] = tree.threshold[node]
            pending += [(int(tree.left[node]), 2 * slot + 1), (int(tree.right[node]), 2 * slot + 2)]
    return feature, threshold, value


def shallow_stack(trees: Sequence[Tree], n_features: int, blocks: Sequence[int]) -> Shallow | None:
    """The heaps of single-output trees, or None if any is deeper than SHALLOW_DEPTH."""
    heaps = []
    for tree in trees:
        heap = _heap(tree) if tree.value.shape[1] == 1 else None
        if heap is None:
            return None
        heaps.append(heap)
    feature, threshold, value = (np.concatenate(parts) for parts in zip(*heaps, strict=True))
    tree_blocks = np.asarray(blocks, dtype=np.intp)
    feature_in_blocks = feature + np.repeat(tree_blocks, _SLOTS) * n_features
    # Gradient boosting splits on bin edges, so a few thousand heaps share ~1,500 splits.
    splits, split_of_slot = np.unique(
        np.stack([feature_in_blocks.astype(float), threshold], axis=1), axis=0, return_inverse=True
    )
    return Shallow(
        split_feature=splits[:, 0].astype(np.intp),
        split_threshold=splits[:, 1].copy(),
        split_of_slot=split_of_slot.reshape(-1).astype(np.intp),
        value=value,
        leaf_base=np.arange(len(trees), dtype=np.intp) * _SLOTS,
        n_blocks=int(tree_blocks.max(initial=0)) + 1,
        n_features=n_features,
    )


def stack_trees(
    trees: Sequence[Tree], n_features: int, blocks: Sequence[int] | None = None
) -> Stack:
    sizes = np.array([len(t.feature) for t in trees])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    feature = np.concatenate([t.feature for t in trees]).astype(np.intp)
    threshold = np.concatenate([t.threshold for t in trees]).astype(float)
    is_leaf = np.concatenate([t.is_leaf for t in trees]).astype(bool)
    left = np.concatenate(
        [np.asarray(t.left, np.intp) + o for t, o in zip(trees, offsets, strict=True)]
    )
    right = np.concatenate(
        [np.asarray(t.right, np.intp) + o for t, o in zip(trees, offsets, strict=True)]
    )
    value = np.concatenate([t.value for t in trees]).astype(float)

    def children(nodes: np.ndarray) -> np.ndarray:
        return np.stack([left[nodes], right[nodes]], axis=1).ravel()

    # Depth of every tree: the deepest level at which it still has a split.
    depth = np.zeros(len(trees), dtype=np.intp)
    frontier, owner, level = offsets, np.arange(len(trees)), 0
    while frontier.size:
        split = ~is_leaf[frontier]
        frontier, owner = frontier[split], owner[split]
        depth[owner] = level + 1
        frontier, owner, level = children(frontier), np.repeat(owner, 2), level + 1
    order = np.argsort(-depth, kind="stable")

    # Breadth-first renumbering from the sorted roots, children appended in pairs.
    visited = [offsets[order]]
    while visited[-1].size:
        nodes = visited[-1]
        visited.append(children(nodes[~is_leaf[nodes]]))
    old = np.concatenate(visited)
    new_of_old = np.full(len(feature), -1, dtype=np.intp)
    new_of_old[old] = np.arange(len(old))
    leaf = is_leaf[old]
    new_left = np.arange(len(old), dtype=np.intp)
    new_left[~leaf] = new_of_old[left[old[~leaf]]]
    new_feature = np.where(leaf, 0, feature[old])
    new_threshold = np.where(leaf, np.inf, threshold[old])
    sorted_depth = depth[order]
    tree_blocks = np.zeros(len(trees), np.intp) if blocks is None else np.asarray(blocks)
    node_block = np.repeat(tree_blocks, sizes)[old]
    return Stack(
        feature=new_feature,
        threshold=new_threshold,
        left=new_left,
        value=value[old],
        rank=np.argsort(order),
        roots=np.arange(len(trees), dtype=np.intp),
        active=tuple(int((sorted_depth > d).sum()) for d in range(int(depth.max(initial=0)))),
        n_features=n_features,
        block=tree_blocks[order],
        n_blocks=int(tree_blocks.max(initial=0)) + 1,
        feature_in_blocks=new_feature + node_block * n_features,
    )
