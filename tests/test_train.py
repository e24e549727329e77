"""`python -m app.train`: the default synthetic model, as the run command builds it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def test_the_default_model_builds_compares_every_candidate_and_does_not_regress(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [sys.executable, "-m", "app.train", "--model-dir", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (active,) = (tmp_path / "ACTIVE").read_text().split()
    manifest = json.loads((tmp_path / active / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert set(metrics["cross_validation"]) == {
        "logistic_regression",
        "neural_network",
        "hist_gradient_boosting",
        "random_forest",
    }
    assert metrics["holdout"]["top1_accuracy"] >= 0.47, metrics["holdout"]
    assert metrics["holdout"]["rows"] == 1600  # 8,000 students, a fifth held out
    assert manifest["source"] == "synthetic"
