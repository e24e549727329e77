"""Tree ensembles (histogram gradient boosting, random forest) as flat numpy node arrays.

Every tree of an ensemble is stacked into one set of node arrays, and all trees and all
rows descend one level per numpy step: the per-tree Python loop of sklearn's predict is
what costs the time for the few rows of a request. Trees of depth 3 at most (the default
gradient boosting) skip even the level steps: each becomes a complete 8-slot heap whose
split outcomes, packed into one byte, index a table of leaves. The responses returned here
are in the form the temperature calibrator scales (see `compiled.py`).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
class _Tree:
    """One tree in sklearn's own numbering: root 0, x <= threshold goes left."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray  # (n_nodes, n_outputs)


@dataclass(frozen=True)
class _Stack:
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
class _Shallow:
    """Single-output trees of depth <= 3 as heaps: every distinct split is compared once,
    in one numpy step, each heap slot picks up its outcome, and a table lookup replaces the
    descent. Trees keep the order given."""

    # The distinct (feature, threshold) splits; features index the blocks laid end to end
    # (feature + block * n_features), as in _Stack. Padding slots are splits at +inf.
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


def _heap(tree: _Tree) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
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


def _shallow(trees: Sequence[_Tree], n_features: int, blocks: Sequence[int]) -> _Shallow | None:
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
    return _Shallow(
        split_feature=splits[:, 0].astype(np.intp),
        split_threshold=splits[:, 1].copy(),
        split_of_slot=split_of_slot.reshape(-1).astype(np.intp),
        value=value,
        leaf_base=np.arange(len(trees), dtype=np.intp) * _SLOTS,
        n_blocks=int(tree_blocks.max(initial=0)) + 1,
        n_features=n_features,
    )


def _stack(trees: Sequence[_Tree], n_features: int, blocks: Sequence[int] | None = None) -> _Stack:
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
    return _Stack(
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


def _standardizer(
    mean: np.ndarray | None, scale: np.ndarray | None, to_float32: bool
) -> Callable[[np.ndarray], np.ndarray]:
    """StandardScaler.transform in sklearn's order of operations (thresholds are exact)."""

    def standardize(x: np.ndarray) -> np.ndarray:
        z = x - mean if mean is not None else x.copy()
        if scale is not None:
            z /= scale
        if to_float32:
            # sklearn trees cast their input to float32 and compare it with float64
            # thresholds; the float64 copy of the float32 value compares the same way.
            # Like sklearn's, a value float32 cannot hold is refused, not read as inf.
            with np.errstate(over="ignore"):
                z = z.astype(np.float32)
            if not np.logical_and.reduce(np.isfinite(z), axis=None):
                raise ValueError("Input contains a value too large for dtype('float32').")
            z = z.astype(float)
        return z

    return standardize


def _hgb_trees(model: Any, n_classes: int) -> list[list[_Tree]] | None:
    """A gradient-boosting model's trees of each class (one list for a binary model),
    iterations in order, or None if the model is not supported."""
    per_iteration = model.n_trees_per_iteration_
    multiclass = per_iteration == n_classes > 2
    if (
        not (multiclass or (per_iteration == 1 and n_classes == 2))
        or getattr(model, "_preprocessor", None) is not None
        or not model._predictors
    ):
        return None
    trees: list[list[_Tree]] = [[] for _ in range(per_iteration)]
    for iteration in model._predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                return None
            trees[k].append(
                _Tree(
                    feature=nodes["feature_idx"],
                    threshold=nodes["num_threshold"],
                    left=nodes["left"],
                    right=nodes["right"],
                    is_leaf=nodes["is_leaf"],
                    value=nodes["value"][:, None],
                )
            )
    return trees


def hgb_response(
    model: Any, mean: np.ndarray | None, scale: np.ndarray | None, n_classes: int
) -> Response | None:
    folds = hgb_folds_response([model], [mean], [scale], n_classes)
    if folds is None:
        return None
    return lambda x: folds(x[None])[0]


def hgb_folds_response(
    models: Sequence[Any],
    means: Sequence[np.ndarray | None],
    scales: Sequence[np.ndarray | None],
    n_classes: int,
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The decision functions of several gradient-boosting models (the folds of one
    calibrated ensemble) from one walk over all their trees: given each fold's imputed
    rows (folds, rows, features), an array (folds, rows, classes) of logits for the
    temperature scaler."""
    trees: list[_Tree] = []
    tree_fold: list[int] = []
    group_sizes: list[int] = []
    per_iteration = models[0].n_trees_per_iteration_
    for fold, model in enumerate(models):
        found = _hgb_trees(model, n_classes)
        if found is None or model.n_trees_per_iteration_ != per_iteration:
            return None
        # Grouped by (fold, class), iterations in order: one reduceat then sums each
        # group's leaves in sklearn's order (which starts from the baseline, added here
        # last: the sums agree to rounding).
        for class_trees in found:
            trees += class_trees
            group_sizes.append(len(class_trees))
            tree_fold += [fold] * len(class_trees)
    n_features = models[0].n_features_in_
    stack: _Shallow | _Stack | None = _shallow(trees, n_features, tree_fold)
    if stack is None:
        stack = _stack(trees, n_features, blocks=tree_fold)
    group_starts = np.concatenate([[0], np.cumsum(group_sizes)[:-1]]).astype(np.intp)
    baselines = np.stack(
        [np.asarray(m._baseline_prediction, dtype=float).reshape(per_iteration) for m in models]
    )[:, None, :]
    fold_means = np.stack([np.zeros(n_features) if m is None else m for m in means])[:, None]
    fold_scales = np.stack([np.ones(n_features) if s is None else s for s in scales])[:, None]
    multiclass = per_iteration > 1

    def response(filled: np.ndarray) -> np.ndarray:
        # HistGradientBoostingClassifier.decision_function: baseline + sum of leaves.
        # `filled` is (folds, rows, features); StandardScaler's arithmetic, every fold at once.
        n_rows = filled.shape[1]
        z = (filled - fold_means) / fold_scales
        leaf_values = stack.leaf_values(z.reshape(-1, z.shape[2]))
        summed = np.add.reduceat(leaf_values, group_starts, axis=0)
        raw = summed.reshape(len(models), per_iteration, n_rows).transpose(0, 2, 1) + baselines
        if not multiclass:
            return np.concatenate([-raw, raw], axis=2)
        # decision_logits per fold; most decision values are negative somewhere, which no
        # probability is, so one reduction usually settles every fold.
        if (np.minimum.reduce(raw, axis=(1, 2)) < 0).all():
            return raw
        return np.stack([decision_logits(fold) for fold in raw])

    return response


def forest_response(
    model: Any, mean: np.ndarray | None, scale: np.ndarray | None, n_classes: int
) -> Response | None:
    from sklearn.tree import DecisionTreeClassifier

    if (
        model.n_outputs_ != 1
        or model.n_classes_ != n_classes
        or not model.estimators_
        or any(type(e) is not DecisionTreeClassifier for e in model.estimators_)
    ):
        return None
    trees = []
    for estimator in model.estimators_:
        tree = estimator.tree_
        # DecisionTreeClassifier.predict_proba returns tree_.value as stored (class
        # fractions since sklearn 1.4), cut to the forest's classes.
        trees.append(
            _Tree(
                feature=tree.feature,
                threshold=tree.threshold,
                left=tree.children_left,
                right=tree.children_right,
                is_leaf=tree.children_left == -1,
                value=tree.value[:, 0, :n_classes],
            )
        )
    stack = _stack(trees, model.n_features_in_)
    values, n_trees = stack.value, len(trees)
    standardize = _standardizer(mean, scale, to_float32=True)

    def response(x: np.ndarray) -> np.ndarray:
        leaves = stack.leaves(standardize(x))
        # RandomForestClassifier.predict_proba: the mean of the trees' distributions.
        proba = np.add.reduce(np.take(values, leaves, axis=0), axis=0)
        proba /= n_trees
        if n_classes == 2:
            # sklearn's _get_response_values keeps p of the positive class only, and the
            # temperature calibrator rebuilds (1 - p, p) from it.
            proba[:, 0] = 1 - proba[:, 1]
        proba += EPS
        return np.log(proba, out=proba)

    return response
