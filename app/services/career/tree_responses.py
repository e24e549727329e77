"""Responses of fitted sklearn tree ensembles (histogram gradient boosting, random forest),
read out of their fitted trees into the flat layouts of `trees.py`.

Each response takes imputed rows and returns what sklearn's calibrator would scale (see
`compiled.py`), to the last digit sklearn's own predict gives; None means the model is of
a shape these do not cover, and the caller keeps sklearn.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from app.services.career.trees import (
    EPS,
    Response,
    Shallow,
    Stack,
    Tree,
    decision_logits,
    shallow_stack,
    stack_trees,
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


def _hgb_trees(model: Any, n_classes: int) -> list[list[Tree]] | None:
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
    trees: list[list[Tree]] = [[] for _ in range(per_iteration)]
    for iteration in model._predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                return None
            trees[k].append(
                Tree(
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
    trees: list[Tree] = []
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
    stack: Shallow | Stack | None = shallow_stack(trees, n_features, tree_fold)
    if stack is None:
        stack = stack_trees(trees, n_features, blocks=tree_fold)
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
            Tree(
                feature=tree.feature,
                threshold=tree.threshold,
                left=tree.children_left,
                right=tree.children_right,
                is_leaf=tree.children_left == -1,
                value=tree.value[:, 0, :n_classes],
            )
        )
    stack = stack_trees(trees, model.n_features_in_)
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
