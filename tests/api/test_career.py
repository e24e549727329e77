"""Career routes through HTTP, as the gateway calls them."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.schemas.career import PredictResponse
from app.services.career import compiled
from app.services.career.bundle import VersionRegistry
from app.services.career.catalog import default_catalog
from app.services.career.preparation import prepare_frame
from app.services.career.synthetic import generate_students
from app.services.career.training import TrainingConfig, train_model
from tests.conftest import assert_error

pytestmark = pytest.mark.integration

PREDICT = "/api/v1/career/predict"
ANALYZE = "/api/v1/career/analyze"

CODER = {
    "academic_scores": {"math": 95, "computer_science": 97, "physics": 85, "english": 62},
    "interests": {"keywords": ["coding", "math puzzles"]},
    "habits": {"weekly_self_study_hours": 20, "absence_days": 2, "part_time_job": False},
    "top_k": 3,
}
ARTIST = {
    "academic_scores": {"art": 98, "english": 80, "math": 55, "physics": 50},
    "interests": {
        "riasec": {
            "artistic": 95,
            "realistic": 30,
            "investigative": 30,
            "social": 50,
            "enterprising": 40,
            "conventional": 20,
        }
    },
}


def predict(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(PREDICT, json=body)
    assert response.status_code == 200, response.text
    envelope = response.json()
    assert envelope["success"] is True and envelope["error"] is None
    PredictResponse.model_validate(envelope["data"])  # the documented schema
    return dict(envelope["data"])


def test_predict_returns_ranked_calibrated_careers(client: TestClient) -> None:
    data = predict(client, CODER)
    recs = data["recommendations"]
    assert [r["rank"] for r in recs] == [1, 2, 3]
    probabilities = [r["probability"] for r in recs]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 < p < 1 for p in probabilities)
    assert recs[0]["career"] == {"id": "software_engineer", "name": "Software Engineer"}
    top = recs[0]
    assert 0 <= top["compatibility"]["academic_fit"] <= 100
    assert top["compatibility"]["interest_fit"] > 70
    assert top["compatibility"]["overall"] == pytest.approx(
        (top["compatibility"]["academic_fit"] + top["compatibility"]["interest_fit"]) / 2, abs=0.1
    )
    assert {s["feature"] for s in top["strengths"]} >= {"computer_science", "math"}
    assert data["model_version"].startswith("synthetic-")
    assert "math" in data["features_used"] and "investigative" in data["features_used"]


def test_predict_serves_models_without_the_compiled_predictor(client: TestClient) -> None:
    """A model the compiler refuses predicts through sklearn (in a worker thread):
    same answers, and the server keeps serving other requests."""
    fast = predict(client, CODER)
    client.app.state.career.model.compiled = None  # type: ignore[attr-defined]
    slow = predict(client, CODER)
    assert [r["career"] for r in slow["recommendations"]] == [
        r["career"] for r in fast["recommendations"]
    ]
    for a, b in zip(slow["recommendations"], fast["recommendations"], strict=True):
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-4)
    assert client.get("/health/live").status_code == 200


def test_a_compiled_predictor_that_disagrees_is_refused_and_sklearn_serves(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never wrong numbers: a compiled predictor that does not reproduce sklearn at load is
    dropped, /health says why, and the answers are sklearn's."""
    reference = predict(make_client(), CODER)

    def broken(estimator: Any, n_features: int) -> Any:
        working = real_compile(estimator, n_features)
        return lambda rows: working(rows)[:, ::-1].copy()  # careers' columns reversed

    real_compile = compiled.compile_predictor
    monkeypatch.setattr(compiled, "compile_predictor", broken)
    client = make_client()
    predictor = client.get("/health").json()["data"]["models"]["career"]["predictor"]
    assert predictor["kind"] == "sklearn"
    assert "differ from sklearn" in predictor["problem"]
    answer = predict(client, CODER)
    assert [r["career"] for r in answer["recommendations"]] == [
        r["career"] for r in reference["recommendations"]
    ]
    for a, b in zip(answer["recommendations"], reference["recommendations"], strict=True):
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-4)


def test_different_students_get_different_careers(client: TestClient) -> None:
    artist = predict(client, ARTIST)["recommendations"]
    assert {r["career"]["name"] for r in artist[:3]} & {"Artist", "Designer", "Writer"}
    best_artistic = max(
        (r for r in artist if r["career"]["name"] in {"Artist", "Designer"}),
        key=lambda r: r["compatibility"]["interest_fit"],
    )
    assert best_artistic["compatibility"]["interest_fit"] > 80
    coder = predict(client, CODER)["recommendations"]
    assert coder[0]["career"] != artist[0]["career"]


def test_missing_optional_fields_are_imputed_with_warnings(client: TestClient) -> None:
    data = predict(client, {"academic_scores": {"biology": 95, "chemistry": 93}})
    assert len(data["recommendations"]) == 5
    assert "math" in data["imputed"] and "investigative" in data["imputed"]
    assert any("imputed" in w for w in data["warnings"])
    top = data["recommendations"][0]
    assert top["compatibility"]["interest_fit"] is None
    assert top["compatibility"]["overall"] == top["compatibility"]["academic_fit"]


def test_keywords_and_riasec_combine_explicit_wins(client: TestClient) -> None:
    body = {
        "academic_scores": {"math": 70},
        "interests": {"keywords": ["helping people"], "riasec": {"social": 10}},
    }
    data = predict(client, body)
    assert "social" not in data["imputed"]
    assert data["recommendations"]


def test_top_k_bounds(client: TestClient) -> None:
    assert len(predict(client, {**CODER, "top_k": 1})["recommendations"]) == 1
    for bad in (0, 26, -1, 2.5, "3"):
        assert_error(client.post(PREDICT, json={**CODER, "top_k": bad}), 422, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"academic_scores": {"math": 101}}, "academic_scores.math"),
        ({"academic_scores": {"math": -1}}, "academic_scores.math"),
        ({"academic_scores": {"math": "ninety"}}, "academic_scores.math"),
        ({"academic_scores": {"math": "90"}}, "academic_scores.math"),
        ({"academic_scores": {"math": True}}, "academic_scores.math"),
        ({"academic_scores": {"math": None}}, "academic_scores.math"),
        ({"academic_scores": {}}, "academic_scores"),
        ({"academic_scores": [90, 80]}, "academic_scores"),
        ({}, "academic_scores"),
        (
            {"academic_scores": {"math": 90}, "interests": {"riasec": {"artistic": 120}}},
            "interests.riasec.artistic",
        ),
        (
            {"academic_scores": {"math": 90}, "interests": {"riasec": {"sporty": 50}}},
            "interests.riasec.sporty.[key]",
        ),
        ({"academic_scores": {"math": 90}, "habits": {"absence_days": -3}}, "habits.absence_days"),
        (
            {"academic_scores": {"math": 90}, "habits": {"part_time_job": "yes"}},
            "habits.part_time_job",
        ),
        ({"academic_scores": {"math": 90}, "habits": {"sleep": 8}}, "habits.sleep"),
        ({"academic_scores": {"math": 90}, "surprise": 1}, "surprise"),
    ],
)
def test_invalid_fields_are_named(client: TestClient, body: dict[str, Any], field: str) -> None:
    error = assert_error(client.post(PREDICT, json=body), 422, "VALIDATION_ERROR")
    assert field in [d["field"] for d in error["details"]], error["details"]


@pytest.mark.parametrize(
    "raw",
    [
        '{"academic_scores": {"math": NaN}}',
        '{"academic_scores": {"math": Infinity}}',
        '{"academic_scores": {"math": -Infinity}}',
    ],
)
def test_nan_and_infinity_are_rejected(client: TestClient, raw: str) -> None:
    response = client.post(PREDICT, content=raw, headers={"content-type": "application/json"})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "academic_scores.math"


@pytest.mark.parametrize("raw", ["", "not json", "{", "[]", "null", '"text"'])
def test_empty_and_non_json_bodies(client: TestClient, raw: str) -> None:
    response = client.post(PREDICT, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 422, "VALIDATION_ERROR")


def test_unknown_subject_lists_allowed(client: TestClient) -> None:
    error = assert_error(
        client.post(PREDICT, json={"academic_scores": {"math": 90, "Potions": 80}}),
        422,
        "VALIDATION_ERROR",
    )
    detail = error["details"][0]
    assert detail["field"] == "academic_scores.potions"
    assert "math" in detail["allowed"]


def test_unknown_keyword_lists_vocabulary(client: TestClient) -> None:
    body = {"academic_scores": {"math": 90}, "interests": {"keywords": ["coding", "quidditch"]}}
    error = assert_error(client.post(PREDICT, json=body), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "interests.keywords.1"
    assert "coding" in error["details"][0]["allowed"]


def test_server_keeps_serving_after_bad_inputs(client: TestClient) -> None:
    for raw in ["{", '{"academic_scores": {"math": NaN}}', "x" * 10]:
        client.post(PREDICT, content=raw, headers={"content-type": "application/json"})
    assert predict(client, CODER)["recommendations"]


def test_analyze_explains_named_careers(client: TestClient) -> None:
    body = {**CODER, "careers": ["Software Engineer", "artist"]}
    body.pop("top_k")
    response = client.post(ANALYZE, json=body)
    assert response.status_code == 200, response.text
    analyses = response.json()["data"]["analyses"]
    assert [a["career"]["id"] for a in analyses] == ["software_engineer", "artist"]
    software, artist = analyses
    assert software["probability"] > artist["probability"]
    contributions = {c["feature"]: c["contribution"] for c in software["contributions"]}
    assert contributions["computer_science"] > 0
    assert set(contributions) == {
        "math",
        "computer_science",
        "physics",
        "english",
        *[
            d
            for d in (
                "realistic",
                "investigative",
                "artistic",
                "social",
                "enterprising",
                "conventional",
            )
        ],
        "weekly_self_study_hours",
        "absence_days",
        "part_time_job",
    }
    comparison = software["comparison"]
    assert comparison["students"] > 0
    assert comparison["percentiles"]["computer_science"] > 80
    assert 0 <= comparison["interest_distance"] <= 1
    assert comparison["interest_distance"] < artist["comparison"]["interest_distance"]
    gains = [i["probability_gain"] for i in artist["improvements"]]
    assert gains == sorted(gains, reverse=True) and all(g > 0 for g in gains)
    assert len(gains) <= 3


def test_analyze_all_careers_by_default(client: TestClient) -> None:
    careers = client.get("/api/v1/career/careers").json()["data"]
    in_model = [c for c in careers if c["in_active_model"]]
    response = client.post(ANALYZE, json={"academic_scores": {"math": 70}})
    assert len(response.json()["data"]["analyses"]) == len(in_model)


def test_analyze_unknown_career_is_422(client: TestClient) -> None:
    error = assert_error(
        client.post(ANALYZE, json={"academic_scores": {"math": 70}, "careers": ["Wizard"]}),
        422,
        "VALIDATION_ERROR",
    )
    assert "Software Engineer" in error["details"][0]["allowed"]


def test_catalog(client: TestClient) -> None:
    careers = client.get("/api/v1/career/careers").json()["data"]
    names = {c["name"] for c in careers}
    assert len(careers) >= 17
    assert {"Software Engineer", "Doctor", "Writer", "Stock Investor"} <= names
    doctor = next(c for c in careers if c["name"] == "Doctor")
    assert doctor["riasec"] == "ISR" and "biology" in doctor["key_subjects"]
    assert doctor["description"]


def test_interest_vocabulary(client: TestClient) -> None:
    data = client.get("/api/v1/career/interests").json()["data"]
    assert data["riasec"][0] == "realistic" and len(data["riasec"]) == 6
    coding = next(k for k in data["keywords"] if k["keyword"] == "coding")
    assert coding["riasec"][0] == "investigative"


def test_model_card(client: TestClient) -> None:
    data = client.get("/api/v1/career/model").json()["data"]
    assert data["source"] == "synthetic"
    assert "synthetic" in data["model_card"].lower()
    holdout = data["metrics"]["holdout"]
    assert holdout["top1_accuracy"] > holdout["baseline_top1_accuracy"]
    assert {f["name"] for f in data["feature_spec"]} >= {"math", "investigative", "absence_days"}
    assert len(data["careers"]) >= 17


@pytest.fixture(scope="module")
def tree_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gradient-boosting model (the kind the public data chooses), trained on 800 synthetic
    students in about 2 s: the committed fixture model is logistic regression."""
    directory = tmp_path_factory.mktemp("tree_model")
    data = prepare_frame(generate_students(default_catalog(), 800, seed=3))
    trained = train_model(
        data, config=TrainingConfig(candidates=("hist_gradient_boosting",), cv_folds=3)
    )
    store = VersionRegistry(directory)
    version = store.write(
        trained, data, catalog=default_catalog(), source="test", description="tree model"
    )
    store.set_active(version)
    return directory


def test_predict_and_analytics_work_with_a_tree_model_active(
    make_client: Callable[..., TestClient], tree_model_dir: Path
) -> None:
    client = make_client(career_model_dir=tree_model_dir)
    predictor = client.get("/health").json()["data"]["models"]["career"]["predictor"]
    assert predictor == {"kind": "compiled", "model": "hist_gradient_boosting", "problem": None}
    assert predict(client, CODER)["recommendations"][0]["career"]["id"] == "software_engineer"

    body = {key: value for key, value in CODER.items() if key != "top_k"}
    response = client.post(ANALYZE, json=body)
    assert response.status_code == 200, response.text
    analyses = response.json()["data"]["analyses"]
    careers = client.get("/api/v1/career/careers").json()["data"]
    assert len(analyses) == len([c for c in careers if c["in_active_model"]])
    given = {*CODER["academic_scores"], *CODER["habits"]}
    for analysis in analyses:
        # Contributions, percentiles and improvements read probabilities only, so a tree
        # model is explained feature by feature like a linear one.
        assert given <= {c["feature"] for c in analysis["contributions"]}
        assert set(analysis["comparison"]["percentiles"]) == set(CODER["academic_scores"])
        gains = [i["probability_gain"] for i in analysis["improvements"]]
        assert gains == sorted(gains, reverse=True) and all(g > 0 for g in gains)
    software = next(a for a in analyses if a["career"]["id"] == "software_engineer")
    assert software["comparison"]["percentiles"]["computer_science"] > 80
    assert sum(a["probability"] for a in analyses) == pytest.approx(1, abs=0.01)
    assert any(analysis["improvements"] for analysis in analyses)
