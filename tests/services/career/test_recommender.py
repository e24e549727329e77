"""The career service without HTTP: percentiles, fit parts and the predict answer."""

import copy
import dataclasses
import math
import random
import threading
from typing import Any

import anyio
import pytest
from pydantic import ValidationError
from pydantic_core import to_json

from app.schemas.career import PredictRequest, PredictResponse
from app.services.career.active import LoadedVersion
from app.services.career.bundle import VersionRegistry
from app.services.career.cohorts import CohortScale, percentile
from app.services.career.explain import GAP_PERCENTILE, STRENGTH_PERCENTILE
from app.services.career.features import INTEREST_KEYWORDS, RIASEC, SUBJECTS
from app.services.career.recommender import CareerRecommender
from tests.conftest import CAREER_MODELS

pytestmark = pytest.mark.unit

GRID = [5.0, 25.0, 50.0, 75.0, 95.0]
COHORT = [10.0, 20.0, 30.0, 60.0, 90.0]  # the cohort's values at the GRID percentiles


@pytest.mark.parametrize(
    ("cohort", "value", "expected"),
    [
        (COHORT, 5.0, 0.0),  # below every student
        (COHORT, 10.0, 5.0),  # on the lowest value: the grid's first point
        (COHORT, 95.0, 100.0),  # above every student
        (COHORT, 90.0, 100.0),  # on the highest value
        (COHORT, 20.0, 25.0),  # exactly on a quantile
        (COHORT, 25.0, 37.5),  # halfway between two quantiles
        (COHORT, 40.0, 58.3),  # a third of the way from 30 to 60
        ([10.0, 40.0, 40.0, 40.0, 90.0], 40.0, 50.0),  # a tie sits mid-run
    ],
)
def test_percentile_interpolates_and_splits_ties(
    cohort: list[float], value: float, expected: float
) -> None:
    assert percentile(cohort, GRID, value) == expected


@pytest.mark.parametrize("cohort", [COHORT, [10.0, 40.0, 40.0, 40.0, 90.0], [0.0] * 4 + [100.0]])
def test_cohort_scale_table_agrees_with_the_exactpercentile(cohort: list[float]) -> None:
    scale = CohortScale(cohort, GRID)
    values = [v / 4 for v in range(-8, 500)] + [-0.0, 1e-9, 99.999, 365.0, 0, 40, 100, 101]
    for value in values:
        assert scale.percentile(value) == percentile(cohort, GRID, value), value


@pytest.fixture(scope="module")
def recommender() -> CareerRecommender:
    service = CareerRecommender(VersionRegistry(CAREER_MODELS))
    service.load()
    assert service.error is None
    return service


def predict(service: CareerRecommender, body: dict[str, Any]) -> list[dict[str, Any]]:
    answer = PredictResponse.model_validate(service.predict(PredictRequest.model_validate(body)))
    return [r.model_dump(mode="json") for r in answer.recommendations]


def random_student(rng: random.Random) -> dict[str, Any]:
    """Any mix of given and missing fields, whole and fractional values."""

    def score() -> float:
        return rng.choice([float(rng.randint(0, 100)), round(rng.uniform(0, 100), 2)])

    student: dict[str, Any] = {
        "academic_scores": {s: score() for s in rng.sample(SUBJECTS, rng.randint(1, 10))},
        "top_k": rng.randint(1, 25),
    }
    interests: dict[str, Any] = {}
    if rng.random() < 0.6:
        interests["keywords"] = rng.sample(sorted(INTEREST_KEYWORDS), rng.randint(1, 4))
    if rng.random() < 0.5:
        interests["riasec"] = {d: score() for d in rng.sample(RIASEC, rng.randint(1, 6))}
    if interests:
        student["interests"] = interests
    if rng.random() < 0.7:
        student["habits"] = {
            "weekly_self_study_hours": score(),
            "absence_days": float(rng.randint(0, 30)),
            "part_time_job": rng.random() < 0.5,
        }
    return student


def test_predict_answers_serialise_as_their_validated_model(
    recommender: CareerRecommender,
) -> None:
    """The route serialises predict's plain answer without validating it: over random
    students it must validate as PredictResponse and give the very same JSON."""
    rng = random.Random(7)
    for _ in range(300):
        answer = recommender.predict(PredictRequest.model_validate(random_student(rng)))
        validated = PredictResponse.model_validate(answer)
        assert to_json(answer) == validated.model_dump_json().encode()


def summary(recommendations: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["career"]["id"],
            r["probability"],
            tuple(r["compatibility"].values()),
            [(p["feature"], p["percentile"]) for p in r["strengths"]],
            [(p["feature"], p["percentile"]) for p in r["gaps"]],
        )
        for r in recommendations
    ]


def test_predict_matches_the_reference_answers(recommender: CareerRecommender) -> None:
    """Answers of the committed model, recorded before the predict path was optimised:
    any refactoring of the service must keep them to the last digit."""
    coder = {
        "academic_scores": {"math": 88, "physics": 79, "computer_science": 93, "english": 71},
        "interests": {"keywords": ["coding", "robotics"]},
        "top_k": 3,
    }
    assert summary(predict(recommender, coder)) == [
        (
            "software_engineer",
            0.9362,
            (92.4, 91.0, 93.8),
            [
                ("computer_science", 96.1),
                ("investigative", 93.6),
                ("math", 92.5),
                ("physics", 75.0),
            ],
            [],
        ),
        (
            "construction_engineer",
            0.0233,
            (87.8, 82.0, 93.6),
            [("investigative", 99.9), ("math", 92.0), ("physics", 72.1), ("realistic", 28.5)],
            [],
        ),
        (
            "data_scientist",
            0.0213,
            (87.6, 93.7, 81.4),
            [("computer_science", 96.6), ("math", 91.1), ("investigative", 87.7)],
            [],
        ),
    ]
    carer = {
        "academic_scores": {"biology": 91, "chemistry": 84, "english": 40},
        "interests": {
            "riasec": {
                "realistic": 20,
                "investigative": 80,
                "artistic": 30,
                "social": 90,
                "enterprising": 35,
                "conventional": 45,
            }
        },
        "top_k": 2,
    }
    assert summary(predict(recommender, carer)) == [
        (
            "nurse",
            0.4641,
            (83.1, 74.5, 91.7),
            [("investigative", 96.6), ("social", 91.7), ("biology", 89.0), ("chemistry", 86.3)],
            [("english", 2.5)],
        ),
        (
            "doctor",
            0.463,
            (87.6, 86.4, 88.8),
            [("social", 97.2), ("biology", 93.8), ("investigative", 79.8), ("chemistry", 78.2)],
            [],
        ),
    ]
    artist = {"academic_scores": {"art": 95, "history": 62.5, "math": 35}, "top_k": 2}
    assert summary(predict(recommender, artist)) == [
        ("artist", 0.371, (71.1, 71.1, None), [("art", 91.1)], [("history", 21.2)]),
        ("designer", 0.2212, (96.5, 96.5, None), [("art", 96.5)], []),
    ]


def test_fit_parts_follow_their_definitions(recommender: CareerRecommender) -> None:
    scores = {"math": 97, "computer_science": 30, "art": 50}
    body = {
        "academic_scores": scores,
        "interests": {"keywords": ["coding"]},
        "top_k": 22,
    }
    recommendations = predict(recommender, body)
    probabilities = [r["probability"] for r in recommendations]
    assert probabilities == sorted(probabilities, reverse=True)
    assert math.isclose(sum(probabilities), 1.0, abs_tol=0.01)
    for r in recommendations:
        fit = r["compatibility"]
        parts = [p for p in (fit["academic_fit"], fit["interest_fit"]) if p is not None]
        assert fit["overall"] == pytest.approx(sum(parts) / len(parts), abs=0.051)
        for point in r["strengths"] + r["gaps"]:
            # Only given subjects and the career's leading interests are reported.
            assert point["feature"] in scores or point["kind"] == "interest"
        standing = [
            p["percentile"] if p["percentile"] is not None else p["value"] for p in r["strengths"]
        ]
        assert standing == sorted(standing, reverse=True)
        for point in r["strengths"]:
            level = point["percentile"] if point["kind"] == "subject" else point["value"]
            assert level >= STRENGTH_PERCENTILE
        for point in r["gaps"]:
            level = point["percentile"] if point["kind"] == "subject" else point["value"]
            assert level <= GAP_PERCENTILE


def test_imputed_subjects_do_not_count_towards_academic_fit(
    recommender: CareerRecommender,
) -> None:
    only_art = predict(recommender, {"academic_scores": {"art": 80}, "top_k": 22})
    for r in only_art:
        features = {p["feature"] for p in r["strengths"] + r["gaps"]}
        assert features <= {"art"}
    # Careers without art among their key subjects have no academic fit, and with no
    # interests given either, no overall fit.
    unfit = [r["compatibility"] for r in only_art if r["compatibility"]["academic_fit"] is None]
    assert unfit
    assert all(c["overall"] is None for c in unfit)


CODER = {
    "academic_scores": {"math": 88, "physics": 79, "computer_science": 93},
    "interests": {"keywords": ["coding", "robotics"]},
    "top_k": 4,
}


def test_predict_async_runs_inline_only_with_the_compiled_predictor() -> None:
    """Predictions through the verified compiled predictor stay on the event loop; sklearn's
    own predict_proba, far slower per row, goes to a worker thread."""
    service = CareerRecommender(VersionRegistry(CAREER_MODELS))
    service.load()
    request = PredictRequest.model_validate(CODER)
    threads: list[int] = []
    model = service.model
    original = model.proba

    def spy(rows: Any) -> Any:
        threads.append(threading.get_ident())
        return original(rows)

    model.proba = spy  # type: ignore[method-assign]

    async def run() -> tuple[Any, int]:
        return await service.predict_async(request), threading.get_ident()

    assert service.model.compiled is not None
    fast, loop_thread = anyio.run(run)
    assert threads == [loop_thread]

    service.model.compiled = None
    slow, loop_thread = anyio.run(run)
    assert threads[1] != loop_thread
    slow_recs, fast_recs = slow["recommendations"], fast["recommendations"]
    assert [r["career"] for r in slow_recs] == [r["career"] for r in fast_recs]
    for a, b in zip(slow_recs, fast_recs, strict=True):
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-4)
        assert a["compatibility"] == b["compatibility"]


def test_cohorts_without_reference_data_still_get_answers(
    recommender: CareerRecommender,
) -> None:
    """A retrained model may lack interest quantiles for a cohort, subject quantiles, or a
    catalog entry for a career: the fit leaves those parts out instead of failing."""
    bundle = recommender.model.bundle
    reference = copy.deepcopy(bundle.reference)
    first, second, *_ = bundle.classes
    for dim in RIASEC:  # no interest quantiles for the first cohort
        reference["careers"][first]["quantiles"][dim] = None
    for subject in bundle.catalog[second].subjects:  # no key-subject quantiles for the second
        reference["careers"][second]["quantiles"][subject] = None
    catalog = {name: c for name, c in bundle.catalog.items() if name != second}
    model = LoadedVersion(dataclasses.replace(bundle, reference=reference, catalog=catalog))
    service = CareerRecommender(VersionRegistry(CAREER_MODELS))
    service.install(model)
    body = {**CODER, "top_k": len(bundle.classes)}
    by_name = {r["career"]["name"]: r for r in predict(service, body)}

    points = by_name[first]["strengths"] + by_name[first]["gaps"]
    interests = [p for p in points if p["kind"] == "interest"]
    assert interests and all(p["percentile"] is None for p in interests)
    # Uncatalogued: key subjects are the cohort's most distinctive ones that have quantiles.
    assert set(model.profiles[1].key_subjects).isdisjoint(bundle.catalog[second].subjects)
    assert model.profiles[1].interest_code is None
    assert by_name[second]["compatibility"]["interest_fit"] is None
    assert math.isclose(sum(r["probability"] for r in by_name.values()), 1.0, abs_tol=0.01)


def test_opposite_interests_fit_zero_not_negative_zero(recommender: CareerRecommender) -> None:
    """A profile opposite a career's code (found by search on the committed model) used
    to round to interest_fit -0.0, which JSON shows as "-0.0"."""
    riasec = {
        "realistic": 50.95218374516969,
        "investigative": 50.00478484294055,
        "artistic": 50.95218374516969,
        "social": 50.95218374516969,
        "enterprising": 49.05738594071141,
        "conventional": 48.08127798083897,
    }
    body = {"academic_scores": {"math": 50.0}, "interests": {"riasec": riasec}, "top_k": 25}
    by_name = {r["career"]["name"]: r for r in predict(recommender, body)}
    fit = by_name["Accountant"]["compatibility"]
    assert fit["interest_fit"] == 0.0 and math.copysign(1, fit["interest_fit"]) == 1
    assert math.copysign(1, fit["overall"]) == 1


def test_answers_do_not_share_mutable_state_with_the_model(
    recommender: CareerRecommender,
) -> None:
    request = PredictRequest.model_validate(CODER)
    before = to_json(recommender.predict(request))
    answer = recommender.predict(request)
    answer["features_used"].reverse()
    answer["imputed"].clear()
    with pytest.raises(ValidationError):
        answer["recommendations"][0]["career"].name = "changed"
    assert to_json(recommender.predict(request)) == before
