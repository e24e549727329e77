"""Schemas of the career routes: the student profile in, recommendations and analytics out."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.domain.enums import RIASEC
from app.domain.records import VersionFacts

# Strict: a string "85" or a boolean is a wrong type, not a number; NaN/Infinity are refused.
Score = Annotated[float, Field(ge=0, le=100, strict=True, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100)]


class Interests(BaseModel):
    """RIASEC scores, interest keywords, or both (explicit scores win over keywords)."""

    model_config = ConfigDict(extra="forbid")

    riasec: (
        dict[
            Annotated[
                str,
                Field(pattern=f"^({'|'.join(RIASEC)})$"),
            ],
            Score,
        ]
        | None
    ) = Field(
        default=None,
        description="Holland (RIASEC) interest scores, 0-100, by dimension name.",
        examples=[{"investigative": 85, "realistic": 60, "conventional": 55}],
    )
    keywords: list[Annotated[str, Field(min_length=1, max_length=60)]] | None = Field(
        default=None,
        max_length=30,
        description="Interest keywords from `GET /api/v1/career/interests`.",
        examples=[["coding", "math puzzles"]],
    )


class Habits(BaseModel):
    """Study habits and activities; any field may be left out and is then imputed."""

    model_config = ConfigDict(extra="forbid")

    weekly_self_study_hours: (
        Annotated[float, Field(ge=0, le=100, strict=True, allow_inf_nan=False)] | None
    ) = None
    absence_days: Annotated[float, Field(ge=0, le=365, strict=True, allow_inf_nan=False)] | None = (
        None
    )
    part_time_job: Annotated[bool, Field(strict=True)] | None = None
    extracurricular_activities: Annotated[bool, Field(strict=True)] | None = None


class StudentProfile(BaseModel):
    """One student as the gateway sends them."""

    model_config = ConfigDict(extra="forbid")

    academic_scores: dict[Annotated[str, Field(min_length=1, max_length=40)], Score] = Field(
        min_length=1,
        max_length=40,
        description="Subject -> score 0-100. Subjects of the active model: `GET /api/v1/career/model`.",
        examples=[{"math": 92, "physics": 85, "computer_science": 95, "english": 70}],
    )
    interests: Interests | None = None
    habits: Habits | None = None


class PredictRequest(StudentProfile):
    """A student and how many careers to return."""

    top_k: int = Field(
        default=5, ge=1, le=25, strict=True, description="How many careers to return."
    )


class AnalyzeRequest(StudentProfile):
    """A student and the careers to analyse (all careers when left out)."""

    careers: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None,
        max_length=50,
        description="Career names or ids; leave out for every career of the model.",
        examples=[["Software Engineer", "data_scientist"]],
    )


class CareerRef(BaseModel):
    model_config = ConfigDict(frozen=True)  # shared by every answer that names the career

    id: str = Field(examples=["software_engineer"])
    name: str = Field(examples=["Software Engineer"])


class Compatibility(BaseModel):
    """0-100 parts of the fit; a part is null when the student gave nothing it can use."""

    overall: Percent | None = Field(description="Mean of the available parts.")
    academic_fit: Percent | None = Field(
        description="Weighted percentile of the student's key-subject scores among students "
        "who chose this career."
    )
    interest_fit: Percent | None = Field(
        description="Agreement of the student's RIASEC profile with the career's Holland code "
        "(correlation mapped to 0-100)."
    )


class FitPoint(BaseModel):
    """One subject or interest where the student stands out, up or down."""

    feature: str
    kind: str = Field(description="`subject` or `interest`.")
    value: float
    typical: float | None = Field(description="Median among students who chose this career.")
    percentile: float | None = Field(description="Student's percentile among those students.")


class Recommendation(BaseModel):
    rank: int
    career: CareerRef
    probability: float = Field(ge=0, le=1, description="Calibrated probability of this career.")
    compatibility: Compatibility
    strengths: list[FitPoint]
    gaps: list[FitPoint]


class PredictResponse(BaseModel):
    recommendations: list[Recommendation]
    model_version: str
    features_used: list[str] = Field(description="The active model's features, in order.")
    imputed: list[str] = Field(description="Features not given, imputed from training data.")
    warnings: list[str]


class Contribution(BaseModel):
    feature: str
    value: float | None = Field(description="The student's value (null when imputed).")
    baseline: float = Field(description="Population median the feature is compared with.")
    contribution: float = Field(
        description="How much the student's value moves this career's probability against the "
        "population median: the mean of (student minus student-with-median) and "
        "(median-student-with-value minus median student)."
    )


class Improvement(BaseModel):
    feature: str
    current: float
    suggested: float
    probability_gain: float


class CohortComparison(BaseModel):
    students: int = Field(description="Training students who chose this career.")
    percentiles: dict[str, float] = Field(
        description="Student's percentile per given subject among those students."
    )
    interest_distance: float | None = Field(
        description="0 (same RIASEC profile as the cohort's median) to 1 (opposite corners)."
    )


class CareerAnalysis(BaseModel):
    career: CareerRef
    probability: float
    compatibility: Compatibility
    strengths: list[FitPoint]
    gaps: list[FitPoint]
    contributions: list[Contribution]
    comparison: CohortComparison
    improvements: list[Improvement] = Field(
        description="Changes that would raise this career's probability most (largest first)."
    )


class AnalyzeResponse(BaseModel):
    analyses: list[CareerAnalysis]
    model_version: str
    features_used: list[str]
    imputed: list[str]
    warnings: list[str]


class CatalogCareer(CareerRef):
    description: str
    riasec: str = Field(description="Holland code, most characteristic letter first.")
    key_subjects: dict[str, float]
    in_active_model: bool


class InterestKeyword(BaseModel):
    keyword: str
    riasec: list[str] = Field(description="Dimensions it points at, primary first.")


class InterestVocabulary(BaseModel):
    riasec: list[str]
    keywords: list[InterestKeyword]


class ModelInfo(VersionFacts):
    careers: list[CareerRef]
    model_card: str
