"""The career service's use cases: predict, analyze, the catalog, the model and its versions.

The served model and its hot swap live in `active.py`, cohort statistics in `cohorts.py`,
explanations in `explain.py`; this module turns them into answers.
"""

from collections.abc import Callable
from typing import Any, TypedDict

import anyio
import numpy as np

from app.core import metrics
from app.domain.enums import RIASEC
from app.schemas.career import (
    AnalyzeRequest,
    AnalyzeResponse,
    CareerAnalysis,
    CareerRef,
    CatalogCareer,
    InterestKeyword,
    InterestVocabulary,
    ModelInfo,
    PredictRequest,
    StudentProfile,
)
from app.schemas.retrain import Activation, ModelVersion
from app.services.career.active import LoadedVersion, VersionHolder
from app.services.career.catalog import Career
from app.services.career.explain import compare, fit, what_if
from app.services.career.features import INTEREST_KEYWORDS, FeatureSpec, StudentRow, build_row


class Recommendation(TypedDict):
    rank: int
    career: CareerRef
    probability: float
    compatibility: dict[str, Any]
    strengths: list[dict[str, Any]]
    gaps: list[dict[str, Any]]


class PredictAnswer(TypedDict):
    """Predict's answer: PredictResponse's fields, typed but not validated per request,
    where validation would cost more than the prediction. The route serialises it as it
    is; the tests validate it against PredictResponse over many random students."""

    recommendations: list[Recommendation]
    model_version: str
    features_used: list[str]
    imputed: list[str]
    warnings: list[str]


# Told about every predict and analyze: the model, the feature row (NaN where imputed) and
# the top-1 career's index. Drift monitoring (app/services/outcomes/monitoring.py) is one.
RequestObserver = Callable[[LoadedVersion, np.ndarray, int], None]


class CareerRecommender(VersionHolder):
    """The career service: the served model (see VersionHolder) and what it answers."""

    observer: RequestObserver | None = None

    def versions(self) -> list[ModelVersion]:
        """Every stored version, newest first, with its metrics and the active flag."""
        return self.store.describe()

    def activate_version(self, version: str) -> Activation:
        """Activate a version (or roll back to it) after checking that it loads."""
        previous = self.store.active_version()
        self.activate(version)
        return Activation(version=version, active=True, previous=previous)

    def predict(self, request: PredictRequest) -> PredictAnswer:
        """Top-k careers with probabilities, compatibility, strengths and gaps."""
        return self._predict(self.model, request)

    async def predict_async(self, request: PredictRequest) -> PredictAnswer:
        """`predict` for the event loop, which it must not block.

        With the verified compiled predictor the work is small and bounded (one row, at most a
        few dozen careers), cheaper than the hop to a worker thread and back, so it runs
        inline. A model served through sklearn's predict_proba, whose per-call validation
        costs many times more, runs in the thread pool.
        """
        model = self.model  # one read: the path chosen is the path of the model used
        if model.compiled is not None:
            return self._predict(model, request)
        return await anyio.to_thread.run_sync(self._predict, model, request)

    def _predict(self, model: LoadedVersion, request: PredictRequest) -> PredictAnswer:
        metrics.CAREER_PREDICTIONS.labels("predict").inc()
        row, warnings = self._row(model, request)
        proba = model.proba(row.values[None, :])[0]
        top: list[int] = np.argsort(-proba, kind="stable")[: request.top_k].tolist()
        if self.observer is not None:
            self.observer(model, row.values, top[0])
        probabilities: list[float] = proba.tolist()  # Python floats: no numpy scalars below
        recommendations: list[Recommendation] = []
        for rank, index in enumerate(top, start=1):
            profile = model.profiles[index]
            compatibility, strengths, gaps = fit(profile, row)
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
        metrics.CAREER_PREDICTIONS.labels("analyze").inc()
        careers = model.resolve(request.careers)
        row, warnings = self._row(model, request)
        effects = what_if(model.proba, model.spec, model.baseline, row.values)
        if self.observer is not None:
            self.observer(model, row.values, int(np.argmax(effects.base)))
        analyses = []
        for index in careers:
            profile = model.profiles[index]
            compatibility, strengths, gaps = fit(profile, row)
            analyses.append(
                CareerAnalysis.model_validate(
                    {
                        "career": profile.ref,
                        "probability": round(float(effects.base[index]), 4),
                        "compatibility": compatibility,
                        "strengths": strengths,
                        "gaps": gaps,
                        "contributions": effects.contributions(model.spec, model.baseline, index),
                        "comparison": compare(model.spec, profile, row),
                        "improvements": effects.improvements(model.spec, index),
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
            created_at=m.created_at,
            source=m.source,
            description=m.description,
            feature_spec=m.feature_spec,
            careers=[p.ref for p in model.profiles],
            metrics=m.metrics,
            data=m.data,
            libraries=m.libraries,
            model_card=bundle.model_card,
        )

    @staticmethod
    def _row(model: LoadedVersion, request: StudentProfile) -> tuple[StudentRow, list[str]]:
        row = student_row(model.spec, request)
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


def student_row(spec: FeatureSpec, student: StudentProfile) -> StudentRow:
    """One student, as the request describes them, laid out as a row of `spec`'s features
    (InvalidInput naming every unknown or missing name)."""
    interests = student.interests
    return build_row(
        spec,
        academic_scores=student.academic_scores,
        riasec=interests.riasec if interests else None,
        keywords=interests.keywords if interests else None,
        habits=student.habits.model_dump() if student.habits else None,
    )
