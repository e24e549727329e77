"""CareerRecommender: holds the active career model and answers predict/analyze/catalog."""

import logging
import math
import threading
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from operator import mul
from typing import Any

import anyio
import numpy as np

from app.core.exceptions import (
    AppError,
    InvalidInput,
    ModelInvalid,
    ModelLoading,
    ModelUnavailable,
)
from app.schemas.career import (
    AnalyzeRequest,
    AnalyzeResponse,
    CareerAnalysis,
    CareerRef,
    CatalogCareer,
    CohortComparison,
    Contribution,
    Improvement,
    InterestKeyword,
    InterestVocabulary,
    ModelInfo,
    PredictRequest,
    StudentProfile,
)
from app.services.career.bundle import (
    ActivePointerError,
    BundleError,
    CareerBundle,
    ModelStore,
    validate_version_name,
)
from app.services.career.catalog import Career, career_id
from app.services.career.fastpath import verified_shortcut
from app.services.career.features import (
    INTEREST_KEYWORDS,
    RIASEC,
    StudentRow,
    build_row,
)
from app.utils.text import redact_paths

logger = logging.getLogger(__name__)

# Predict's answer: PredictResponse's fields as plain data (careers as CareerRef). Not
# validated per request, where it cost a sixth of the route's time: the route serialises it
# as it is, and the tests validate it against PredictResponse over many random students.
PredictAnswer = dict[str, Any]

STRENGTH_PERCENTILE = 60.0
GAP_PERCENTILE = 40.0
KEY_SUBJECTS_WHEN_UNCATALOGUED = 3
# What "a realistic change" means for the improvement suggestions.
SUBJECT_STEP = 10.0
STUDY_HOURS_STEP = 5.0
ABSENCE_STEP = 3.0
MAX_IMPROVEMENTS = 3
# Stands for ACTIVE itself in `_failed_version` while the pointer is unusable (never a
# version name: those cannot hold '<').
UNUSABLE_POINTER = "<ACTIVE>"


class CohortScale:
    """Where a value falls among one cohort's students for one feature, as a percentile.

    Exact (`_percentile`) for any value; whole values 0-100, what scores usually are, are
    read from a table built at load time, a quarter of the cost on the per-request path.
    """

    __slots__ = ("grid", "quantiles", "whole")

    def __init__(self, quantiles: list[float], grid: list[float]) -> None:
        self.quantiles = quantiles
        self.grid = grid
        self.whole = [_percentile(quantiles, grid, float(v)) for v in range(101)]

    def percentile(self, value: float) -> float:
        if 0.0 <= value <= 100.0:  # False for NaN too
            whole = int(value)
            if whole == value:
                return self.whole[whole]
        return _percentile(self.quantiles, self.grid, value)


@dataclass(frozen=True)
class CareerProfile:
    """What one class of the model is compared on, precomputed at load time."""

    ref: CareerRef
    key_subjects: dict[str, float]
    interest_code: tuple[float, ...] | None  # centred, unit-length RIASEC profile (catalog)
    students: int
    medians: dict[str, float]
    scales: dict[str, CohortScale]  # feature -> its values at the quantile grid, percentiles
    # What each request's fit reads, resolved once: (subject, weight, column, scale,
    # median) for the key subjects this cohort has quantiles for, and (dimension,
    # scale, median) for the two leading RIASEC dimensions of the career's code.
    subject_terms: tuple[tuple[str, float, int, CohortScale, float], ...]
    interest_terms: tuple[tuple[str, CohortScale | None, float | None], ...]


class ActiveModel:
    """A loaded bundle plus the arrays that make explaining it cheap per request."""

    def __init__(self, bundle: CareerBundle) -> None:
        self.bundle = bundle
        self.spec = bundle.spec
        self.classes = bundle.classes
        self.grid = np.asarray(bundle.reference["quantile_grid"], dtype=float)
        self.grid_list = [float(g) for g in self.grid]
        self.baseline = np.array(
            [bundle.reference["population_median"][name] for name in self.spec.names]
        )
        self.profiles = [self._profile(label) for label in self.classes]
        self.by_key = {}
        for i, profile in enumerate(self.profiles):
            self.by_key[profile.ref.id] = i
            self.by_key[profile.ref.name.lower()] = i
        if not hasattr(bundle.estimator, "predict_proba"):
            raise ModelUnavailable("The career model has no predict_proba.")
        self.shortcut = verified_shortcut(bundle.estimator, self._probe_rows())

    def _probe_rows(self) -> np.ndarray:
        """Rows spanning every career's range, with and without missing values."""
        rows = [self.baseline]
        for profile in self.profiles:
            for q in (1, len(self.grid) // 2, len(self.grid) - 2):
                rows.append(
                    np.array(
                        [
                            profile.scales[name].quantiles[q] if name in profile.scales else np.nan
                            for name in self.spec.names
                        ]
                    )
                )
        probes = np.vstack(rows)
        holes = probes.copy()
        holes[:, ::2] = np.nan
        return np.vstack([probes, holes])

    def _profile(self, label: str) -> CareerProfile:
        ref_stats = self.bundle.reference["careers"][label]
        quantiles = {
            name: [float(v) for v in values]
            for name, values in ref_stats["quantiles"].items()
            if values is not None
        }
        medians = {
            name: round(float(np.interp(50, self.grid, values)), 2)
            for name, values in quantiles.items()
        }
        career = self.bundle.catalog.get(label)
        key = {
            s: w for s, w in (career.subjects if career else {}).items() if s in self.spec.subjects
        }
        if not key:
            key = self._distinctive_subjects(quantiles)
        code = None
        top: tuple[str, ...] = ()
        if career and career.riasec:
            raw = np.array([career.interest_profile()[d] for d in RIASEC])
            centred = raw - raw.mean()
            unit = centred / np.linalg.norm(centred)
            code = tuple(float(v) for v in unit)
            top = tuple(RIASEC[d] for d in np.argsort(-unit, kind="stable")[:2])
        scales = {name: CohortScale(q, self.grid_list) for name, q in quantiles.items()}
        return CareerProfile(
            ref=CareerRef(id=career_id(label), name=label),
            key_subjects=key,
            interest_code=code,
            students=int(ref_stats["students"]),
            medians=medians,
            scales=scales,
            subject_terms=tuple(
                (subject, weight, self.spec.index[subject], scales[subject], medians[subject])
                for subject, weight in key.items()
                if subject in scales
            ),
            interest_terms=tuple((d, scales.get(d), medians.get(d)) for d in top),
        )

    def _distinctive_subjects(self, quantiles: dict[str, list[float]]) -> dict[str, float]:
        """Without a catalog entry: the subjects where this cohort's median beats the population's most."""
        median_at = int(np.searchsorted(self.grid, 50))
        lift = {
            s: quantiles[s][median_at] - float(self.baseline[self.spec.index[s]])
            for s in self.spec.subjects
            if s in quantiles
        }
        top = sorted(lift, key=lambda s: lift[s], reverse=True)[:KEY_SUBJECTS_WHEN_UNCATALOGUED]
        return dict.fromkeys(top, 1.0)

    def proba(self, rows: np.ndarray) -> np.ndarray:
        if self.shortcut is not None:
            return self.shortcut(rows)
        # Rows are built by build_row (finite or NaN for the imputer): sklearn's per-call
        # re-validation would cost more than the prediction itself.
        import sklearn  # already loaded with the model; imported here to keep start-up fast

        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return np.asarray(self.bundle.estimator.predict_proba(rows))

    def resolve(self, names: list[str] | None) -> list[int]:
        if not names:
            return list(range(len(self.classes)))
        indices, unknown = [], []
        for name in names:
            key = name.strip().lower()
            index = self.by_key.get(key, self.by_key.get(career_id(key)))
            if index is None:
                unknown.append(name)
            elif index not in indices:
                indices.append(index)
        if unknown:
            raise InvalidInput(
                f"Unknown career(s) for the active model: {', '.join(unknown)}.",
                details=[
                    {
                        "field": "careers",
                        "message": f"unknown career '{name}'",
                        "type": "unknown_career",
                        "allowed": [p.ref.name for p in self.profiles],
                    }
                    for name in unknown
                ],
            )
        return indices


class CareerRecommender:
    """The career service: loaded once, swapped atomically when a new version is activated."""

    name = "career"

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self._model: ActiveModel | None = None
        self._lock = threading.Lock()
        self.error: str | None = "not loaded yet"
        self.loading = True  # until the first load() ends, in the background at start-up
        self.load_seconds: float | None = None
        self._failed_version: str | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        """Load the active version. If ACTIVE is unusable or names a version that does not
        load, serve the last good version instead (if any) and say why."""
        try:
            try:
                version = self.store.read_active()
            except ActivePointerError as exc:
                self._fall_back(UNUSABLE_POINTER, f"The ACTIVE pointer is unusable: {exc}")
                return
            if version is None:
                if self.store.last_good_version() is not None:  # it existed: lost, not new
                    self._fall_back(UNUSABLE_POINTER, "The ACTIVE pointer is missing")
                    return
                self._failed(
                    None,
                    f"No active career model in {self.store.root}: build one with "
                    "`python -m research.train_career`.",
                )
                return
            self._load_version(version)
        except Exception as exc:  # an unreadable model directory: report it, keep polling
            self._failed(None, f"The career model cannot be loaded: {type(exc).__name__}: {exc}")
        finally:
            self.loading = False

    def _open(self, version: str) -> ActiveModel:
        """Load and prepare a version; any failure becomes BundleError with the reason."""
        try:
            return ActiveModel(self.store.load(version))
        except BundleError:
            raise
        except AppError as exc:
            raise BundleError(exc.message) from exc
        except Exception as exc:  # a bad manifest or a model that loads but cannot predict
            raise BundleError(f"{type(exc).__name__}: {exc}") from exc

    def _load_version(self, version: str) -> ActiveModel | None:
        started = time.perf_counter()
        try:
            model = self._open(version)
        except BundleError as exc:
            self._fall_back(version, f"The career model cannot be loaded: {exc}")
            return None
        self._install(model, started)
        logger.info("career model %s loaded in %.2fs", version, self.load_seconds)
        return model

    def _install(self, model: ActiveModel, started: float) -> None:
        with self._lock:
            self._model = model
            self.error = None
            self._failed_version = None
            self.load_seconds = round(time.perf_counter() - started, 3)

    def _fall_back(self, failed: str | None, reason: str) -> None:
        """ACTIVE cannot be served: keep the model in hand or load the last good one, and
        record why (for /health and the 503s); `failed` is not retried until ACTIVE moves."""
        served = self._model
        if served is None:
            good = self.store.last_good_version()
            if good is not None and good != failed:
                started = time.perf_counter()
                try:
                    served = self._open(good)
                except BundleError as exc:
                    reason = f"{reason}; the last good version {good} does not load either: {exc}"
                else:
                    with self._lock:
                        self._model = served
                        self.load_seconds = round(time.perf_counter() - started, 3)
        if served is not None:
            reason = f"{reason}. Serving the last good version, {served.bundle.version}."
        self._failed(failed, reason)

    def _failed(self, version: str | None, reason: str) -> None:
        self.error = reason
        self._failed_version = version
        logger.error("%s", reason)

    def sync(self) -> None:
        """Follow the ACTIVE pointer (another process may have moved it); cheap when unchanged."""
        try:
            version = self.store.read_active()
        except ActivePointerError as exc:
            if self._failed_version != UNUSABLE_POINTER:  # said once, not at every poll
                self._fall_back(UNUSABLE_POINTER, f"The ACTIVE pointer is unusable: {exc}")
            return
        current = self._model.bundle.version if self._model else None
        if version is None:
            return
        if version == current:
            if self._failed_version is not None:  # ACTIVE names the served version again
                with self._lock:
                    self.error = None
                    self._failed_version = None
                logger.info("career model %s is the active version again", version)
            return
        if version != self._failed_version:
            self._load_version(version)

    def activate(self, version: str) -> ActiveModel:
        """Check that a version loads, then make it active here and for every process."""
        validate_version_name(version)
        self.store.read_manifest(version)  # 404 when there is no such version
        started = time.perf_counter()
        try:
            model = self._open(version)
        except BundleError as exc:
            raise ModelInvalid(
                f"Version '{version}' was refused and the active model is unchanged: {exc}"
            ) from exc
        self.store.set_active(version)
        self._install(model, started)
        logger.info("career model %s activated", version)
        return model

    @property
    def model(self) -> ActiveModel:
        # One read of the reference: a request keeps the model it started with.
        model = self._model
        if model is None:
            if self.loading:
                raise ModelLoading(
                    "The career model is still loading; retry shortly.",
                    headers={"Retry-After": "1"},
                )
            # The API may be open (no API_KEYS): the reason without host paths.
            raise ModelUnavailable(
                f"The career model is not available: {redact_paths(self.error or 'unknown')}"
            )
        return model

    def status(self) -> dict[str, Any]:
        model = self._model
        return {
            "state": "loaded" if model else "loading" if self.loading else "unavailable",
            "version": model.bundle.version if model else None,
            "load_seconds": self.load_seconds,
            "error": self.error,
        }

    # -- queries ---------------------------------------------------------------------------
    def predict(self, request: PredictRequest) -> PredictAnswer:
        """Top-k careers with probabilities, compatibility, strengths and gaps."""
        return self._predict(self.model, request)

    async def predict_async(self, request: PredictRequest) -> PredictAnswer:
        """`predict` for the event loop, which it must not block.

        With the verified numpy shortcut the work is bounded (at most 25 careers) and takes
        0.1-0.3 ms: less than the hop to a worker thread and back (~1 ms on a small VM), so
        it runs inline. Any other model (a retrained forest, boosting or MLP) goes through
        sklearn's predict_proba, 2-40 ms a row, so it runs in the thread pool.
        """
        model = self.model  # one read: the path chosen is the path of the model used
        if model.shortcut is not None:
            return self._predict(model, request)
        return await anyio.to_thread.run_sync(self._predict, model, request)

    def _predict(self, model: ActiveModel, request: PredictRequest) -> PredictAnswer:
        row, warnings = self._row(model, request)
        proba = model.proba(row.values[None, :])[0]
        top: list[int] = np.argsort(-proba, kind="stable")[: request.top_k].tolist()
        probabilities: list[float] = proba.tolist()  # Python floats: no numpy scalars below
        recommendations = []
        for rank, index in enumerate(top, start=1):
            profile = model.profiles[index]
            compatibility, strengths, gaps = _fit(model, profile, row)
            recommendations.append(
                {
                    "rank": rank,
                    "career": profile.ref,
                    "probability": round(probabilities[index], 4),
                    "compatibility": compatibility,
                    "strengths": strengths,
                    "gaps": gaps,
                }
            )
        return {
            "recommendations": recommendations,
            "model_version": model.bundle.version,
            "features_used": list(model.spec.names),  # the caller's copy, not the model's
            "imputed": row.imputed,
            "warnings": warnings,
        }

    def analyze(self, request: AnalyzeRequest) -> AnalyzeResponse:
        """Per-career contributions, cohort comparison and the most useful improvements."""
        model = self.model
        indices = model.resolve(request.careers)
        row, warnings = self._row(model, request)
        x = row.values
        given = [j for j, v in enumerate(x) if not math.isnan(v)]

        # One batched predict. Contributions average two one-feature views, which agree
        # for independent features and keep each other honest for correlated ones:
        # the student with feature j reset to the population median, and the median
        # student with feature j set to the student's value.
        reset = np.repeat(x[None, :], len(given), axis=0)
        lone = np.repeat(model.baseline[None, :], len(given), axis=0)
        for r, j in enumerate(given):
            reset[r, j] = model.baseline[j]
            lone[r, j] = x[j]
        changes = _improvements(model, x)
        improved = np.repeat(x[None, :], len(changes), axis=0)
        for r, (j, new) in enumerate(changes):
            improved[r, j] = new
        proba = model.proba(np.vstack([x[None, :], model.baseline[None, :], reset, lone, improved]))
        base, median_student = proba[0], proba[1]
        n = len(given)
        effect = 0.5 * ((base - proba[2 : 2 + n]) + (proba[2 + n : 2 + 2 * n] - median_student))
        imp = proba[2 + 2 * n :]

        analyses = []
        for index in indices:
            profile = model.profiles[index]
            compatibility, strengths, gaps = _fit(model, profile, row)
            contributions = sorted(
                (
                    Contribution(
                        feature=model.spec.names[j],
                        value=float(x[j]),
                        baseline=round(float(model.baseline[j]), 3),
                        contribution=round(float(effect[r, index]), 4),
                    )
                    for r, j in enumerate(given)
                ),
                key=lambda c: abs(c.contribution),
                reverse=True,
            )
            gains = [
                Improvement(
                    feature=model.spec.names[j],
                    current=float(x[j]),
                    suggested=float(new),
                    probability_gain=round(float(imp[r, index] - base[index]), 4),
                )
                for r, (j, new) in enumerate(changes)
                if imp[r, index] - base[index] > 1e-4
            ]
            gains.sort(key=lambda g: g.probability_gain, reverse=True)
            analyses.append(
                CareerAnalysis.model_validate(
                    {
                        "career": profile.ref,
                        "probability": round(float(base[index]), 4),
                        "compatibility": compatibility,
                        "strengths": strengths,
                        "gaps": gaps,
                        "contributions": contributions,
                        "comparison": _compare(model, profile, row),
                        "improvements": gains[:MAX_IMPROVEMENTS],
                    }
                )
            )
        return AnalyzeResponse(
            analyses=analyses,
            model_version=model.bundle.version,
            features_used=model.spec.names,
            imputed=row.imputed,
            warnings=warnings,
        )

    def catalog(self) -> list[CatalogCareer]:
        """Every career the active model can recommend, with its catalog facts."""
        model = self.model
        careers: dict[str, Career] = model.bundle.catalog
        out = []
        for profile in model.profiles:
            career = careers.get(profile.ref.name)
            out.append(
                CatalogCareer(
                    id=profile.ref.id,
                    name=profile.ref.name,
                    description=career.description if career else "",
                    riasec=career.riasec if career else "",
                    key_subjects=profile.key_subjects,
                    in_active_model=True,
                )
            )
        in_model = {p.ref.name for p in model.profiles}
        out += [
            CatalogCareer(
                id=c.id,
                name=c.name,
                description=c.description,
                riasec=c.riasec,
                key_subjects=dict(c.subjects),
                in_active_model=False,
            )
            for name, c in sorted(careers.items())
            if name not in in_model
        ]
        return out

    @staticmethod
    def vocabulary() -> InterestVocabulary:
        return InterestVocabulary(
            riasec=list(RIASEC),
            keywords=[
                InterestKeyword(keyword=k, riasec=list(dims))
                for k, dims in sorted(INTEREST_KEYWORDS.items())
            ],
        )

    def model_info(self) -> ModelInfo:
        model = self.model  # one read: a concurrent activation cannot mix two versions
        bundle = model.bundle
        m = bundle.manifest
        return ModelInfo(
            version=bundle.version,
            created_at=m["created_at"],
            source=m["source"],
            description=m["description"],
            feature_spec=m["feature_spec"],
            careers=[p.ref for p in model.profiles],
            metrics=m["metrics"],
            data=m["data"],
            libraries=m["libraries"],
            model_card=bundle.model_card,
        )

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _row(model: ActiveModel, request: StudentProfile) -> tuple[StudentRow, list[str]]:
        interests = request.interests
        row = build_row(
            model.spec,
            academic_scores=request.academic_scores,
            riasec=interests.riasec if interests else None,
            keywords=interests.keywords if interests else None,
            habits=request.habits.model_dump() if request.habits else None,
        )
        warnings = []
        if row.imputed:
            warnings.append(
                "Not given, imputed with the training median: " + ", ".join(row.imputed) + "."
            )
        if row.ignored:
            warnings.append("Not used by the active model: " + ", ".join(row.ignored) + ".")
        if row.interests and not model.spec.interests:
            warnings.append(
                "The active model does not use interests; they only inform interest_fit."
            )
        return row, warnings


# The parts of a fit as plain data, in the shape of their pydantic models (Compatibility,
# FitPoint); analyze validates them into its answer once, at the end.
Fit = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]


def _fit(model: ActiveModel, profile: CareerProfile, row: StudentRow) -> Fit:
    """Compatibility parts plus the key subjects and interests where the student stands out."""
    values = row.values_list
    strengths: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    weighted, weights = 0.0, 0.0
    for subject, weight, column, scale, typical in profile.subject_terms:
        value = values[column]
        if math.isnan(value):  # not given: imputed values say nothing about the student
            continue
        pct = scale.percentile(value)
        weighted += weight * pct
        weights += weight
        if pct >= STRENGTH_PERCENTILE:
            strengths.append(_point(subject, "subject", value, typical, pct))
        elif pct <= GAP_PERCENTILE:
            gaps.append(_point(subject, "subject", value, typical, pct))
    academic = round(weighted / weights, 1) if weights else None

    interest = None
    if profile.interest_code is not None and row.interest_centred is not None:
        if row.interest_norm > 0:
            dot = sum(map(mul, row.interest_centred, profile.interest_code))
            # max(): opposite profiles land a rounding error below 0, or on "-0.0".
            interest = max(0.0, round(50 * (dot / row.interest_norm + 1), 1))
        for dim, scale_or_none, median in profile.interest_terms:
            value = row.interests[dim]
            if GAP_PERCENTILE < value < STRENGTH_PERCENTILE:
                continue
            pct_or_none = None if scale_or_none is None else scale_or_none.percentile(value)
            point = _point(dim, "interest", value, median, pct_or_none)
            (strengths if value >= STRENGTH_PERCENTILE else gaps).append(point)
    if academic is None or interest is None:  # the part there is, if any
        overall = interest if academic is None else academic
    else:
        overall = round((academic + interest) / 2, 1)
    strengths.sort(key=_standing, reverse=True)
    gaps.sort(key=_standing)
    compatibility = {"overall": overall, "academic_fit": academic, "interest_fit": interest}
    return compatibility, strengths, gaps


def _percentile(q: list[float], grid: list[float], value: float) -> float:
    """Where `value` falls among a cohort, from its values `q` at the quantile `grid`.

    Plain lists: per request the work is a few bisections on 21 numbers, where Python's
    bisect beats numpy's call overhead tenfold.
    """
    if value <= q[0]:
        return 0.0 if value < q[0] else grid[0]
    if value >= q[-1]:
        return 100.0
    left = bisect_left(q, value)
    right = bisect_right(q, value, left)
    if left < right:  # ties: many students on this exact value sit mid-run
        return round(sum(grid[left:right]) / (right - left), 1)
    share = (value - q[left - 1]) / (q[left] - q[left - 1])
    return round(grid[left - 1] + share * (grid[left] - grid[left - 1]), 1)


def _point(
    feature: str, kind: str, value: float, typical: float | None, pct: float | None
) -> dict[str, Any]:
    """A FitPoint's fields."""
    return {"feature": feature, "kind": kind, "value": value, "typical": typical, "percentile": pct}


def _standing(point: dict[str, Any]) -> float:
    """Sort key: the percentile, or the raw value where the cohort has none."""
    pct: float | None = point["percentile"]
    return point["value"] if pct is None else pct


def _compare(model: ActiveModel, profile: CareerProfile, row: StudentRow) -> CohortComparison:
    percentiles = {}
    for subject in model.spec.subjects:
        value = row.values_list[model.spec.index[subject]]
        if not math.isnan(value):  # imputed subjects are NaN here
            scale = profile.scales.get(subject)
            if scale is not None:
                percentiles[subject] = scale.percentile(value)
    distance = None
    medians = [profile.medians.get(d) for d in RIASEC]
    if len(row.interests) == len(RIASEC) and all(m is not None for m in medians):
        student = np.array([row.interests[d] for d in RIASEC])
        cohort = np.array(medians, dtype=float)
        distance = round(
            float(np.linalg.norm(student - cohort) / (100 * math.sqrt(len(RIASEC)))), 4
        )
    return CohortComparison(
        students=profile.students, percentiles=percentiles, interest_distance=distance
    )


def _improvements(model: ActiveModel, x: np.ndarray) -> list[tuple[int, float]]:
    """Realistic one-feature changes: +10 on a subject, +5 study hours, 3 fewer absences."""
    changes = []
    for j, feature in enumerate(model.spec.features):
        value = x[j]
        if math.isnan(value):
            continue
        if feature.group == "subject" and value < feature.maximum:
            changes.append((j, min(feature.maximum, value + SUBJECT_STEP)))
        elif feature.name == "weekly_self_study_hours" and value < feature.maximum:
            changes.append((j, min(feature.maximum, value + STUDY_HOURS_STEP)))
        elif feature.name == "absence_days" and value > feature.minimum:
            changes.append((j, max(feature.minimum, value - ABSENCE_STEP)))
    return changes
