"""Tree ensembles (histogram gradient boosting, random forest) as flat numpy node arrays.

Every tree of an ensemble is stacked into one set of node arrays, and all trees and all
rows descend one level per numpy step: the per-tree Python loop of sklearn's predict is
what costs the time for the few rows of a request. The responses returned here are in the
form the temperature calibrator scales (see `compiled.py`).
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
    order: np.ndarray  # original index of sorted tree i
    roots: np.ndarray  # arange(n_trees), intp
    active: tuple[int, ...]
    n_features: int

    def leaves(self, z: np.ndarray) -> np.ndarray:
        """Leaf node of every (tree, row): shape (n_trees, n_rows)."""
        n_rows = z.shape[0]
        flat = z.ravel()
        node = np.repeat(self.roots, n_rows).reshape(-1, n_rows)
        base = np.arange(n_rows) * self.n_features if n_rows > 1 else None
        for count in self.active:
            current = node[:count]
            index = np.take(self.feature, current)
            if base is not None:
                index += base
            right = np.take(flat, index) > np.take(self.threshold, current)
            np.add(np.take(self.left, current), right, out=current)
        return node


def _stack(trees: Sequence[_Tree], n_features: int) -> _Stack:
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
    return _Stack(
        feature=new_feature,
        threshold=new_threshold,
        left=new_left,
        value=value[old],
        order=order,
        roots=np.arange(len(trees), dtype=np.intp),
        active=tuple(int((sorted_depth > d).sum()) for d in range(int(depth.max(initial=0)))),
        n_features=n_features,
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
            z = z.astype(np.float32).astype(float)
        return z

    return standardize


def hgb_response(
    model: Any, mean: np.ndarray | None, scale: np.ndarray | None, n_classes: int
) -> Response | None:
    per_iteration = model.n_trees_per_iteration_
    multiclass = per_iteration == n_classes > 2
    if (
        not (multiclass or (per_iteration == 1 and n_classes == 2))
        or getattr(model, "_preprocessor", None) is not None
        or not model._predictors
    ):
        return None
    trees, tree_class = [], []
    for iteration in model._predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                return None
            trees.append(
                _Tree(
                    feature=nodes["feature_idx"],
                    threshold=nodes["num_threshold"],
                    left=nodes["left"],
                    right=nodes["right"],
                    is_leaf=nodes["is_leaf"],
                    value=nodes["value"][:, None],
                )
            )
            tree_class.append(k)
    stack = _stack(trees, model.n_features_in_)
    values = stack.value[:, 0].copy()
    # The stack sorts trees by depth; regrouping them by class lets one reduceat sum each
    # class's leaves (a BLAS product would do too, but its threads fight over busy cores).
    sorted_class = np.asarray(tree_class)[stack.order]
    by_class = np.argsort(sorted_class, kind="stable")
    class_starts = np.searchsorted(sorted_class[by_class], np.arange(per_iteration))
    baseline = np.asarray(model._baseline_prediction, dtype=float).reshape(1, per_iteration)
    standardize = _standardizer(mean, scale, to_float32=False)

    def response(x: np.ndarray) -> np.ndarray:
        # HistGradientBoostingClassifier.decision_function: baseline + sum of leaves.
        leaves = np.take(stack.leaves(standardize(x)), by_class, axis=0)
        raw = np.add.reduceat(np.take(values, leaves), class_starts, axis=0).T
        raw += baseline
        if multiclass:
            return decision_logits(raw)
        return np.concatenate([-raw, raw], axis=1)

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
            # The calibrator keeps p of the positive class and rebuilds (1 - p, p).
            proba[:, 0] = 1 - proba[:, 1]
        proba += EPS
        return np.log(proba, out=proba)

    return response
