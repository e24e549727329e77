"""Schemas of the career routes: the student profile in, recommendations and analytics out."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.domain.enums import RIASEC
from app.domain.records import VersionFacts

# Strict: a string "85" or a boolean is a wrong type, not a number; NaN/Infinity are refused.
Score = Annotated[float, Field(ge=0, le=100, strict=True, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100)]

# One realistic student, shown by Swagger and ReDoc and checked to validate by the tests.
PREDICT_EXAMPLE: dict[str, Any] = {
    "academic_scores": {"math": 92, "physics": 85, "computer_science": 95, "english": 70},
    "interests": {
        "riasec": {"investigative": 85, "realistic": 60, "conventional": 55},
        "keywords": ["coding", "math puzzles"],
    },
    "habits": {
        "weekly_self_study_hours": 12,
        "absence_days": 4,
        "part_time_job": False,
        "extracurricular_activities": True,
    },
    "top_k": 3,
}
ANALYZE_EXAMPLE: dict[str, Any] = {
    **{key: value for key, value in PREDICT_EXAMPLE.items() if key != "top_k"},
    "careers": ["Software Engineer", "data_scientist"],
}

# The fields every answer of the active model carries.
AnsweredBy = Annotated[
    str,
    Field(
        description="The version that answered.",
        examples=["synthetic-20261126T044748482208Z-0c32a74b"],
    ),
]
FeaturesUsed = Annotated[
    list[str],
    Field(
        description="The active model's features, in order.",
        examples=[["math", "physics", "investigative", "weekly_self_study_hours"]],
    ),
]
Imputed = Annotated[
    list[str],
    Field(
        description="Features not given, imputed from training data.",
        examples=[["chemistry", "biology"]],
    ),
]


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
    ) = Field(default=None, description="Hours of self-study per week, 0-100.", examples=[12])
    absence_days: Annotated[float, Field(ge=0, le=365, strict=True, allow_inf_nan=False)] | None = (
        Field(default=None, description="Days absent from school this year, 0-365.", examples=[4])
    )
    part_time_job: Annotated[bool, Field(strict=True)] | None = Field(
        default=None, description="Whether the student has a part-time job.", examples=[False]
    )
    extracurricular_activities: Annotated[bool, Field(strict=True)] | None = Field(
        default=None,
        description="Whether the student takes part in extracurricular activities.",
        examples=[True],
    )


class StudentProfile(BaseModel):
    """One student as the gateway sends them."""

    model_config = ConfigDict(extra="forbid")

    academic_scores: dict[Annotated[str, Field(min_length=1, max_length=40)], Score] = Field(
        min_length=1,
        max_length=40,
        description="Subject -> score 0-100. Subjects of the active model: `GET /api/v1/career/model`.",
        examples=[{"math": 92, "physics": 85, "computer_science": 95, "english": 70}],
    )
    interests: Interests | None = Field(
        default=None, description="What the student likes; leave out when unknown."
    )
    habits: Habits | None = Field(
        default=None, description="Study habits and activities; leave out when unknown."
    )


class PredictRequest(StudentProfile):
    """A student and how many careers to return."""

    model_config = ConfigDict(json_schema_extra={"examples": [PREDICT_EXAMPLE]})

    top_k: int = Field(
        default=5, ge=1, le=25, strict=True, description="How many careers to return.", examples=[3]
    )


class AnalyzeRequest(StudentProfile):
    """A student and the careers to analyse (all careers when left out)."""

    model_config = ConfigDict(json_schema_extra={"examples": [ANALYZE_EXAMPLE]})

    careers: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None,
        max_length=50,
        description="Career names or ids; leave out for every career of the model.",
        examples=[["Software Engineer", "data_scientist"]],
    )


class CareerRef(BaseModel):
    """A career as answers name it: its stable id and its name for people."""

    model_config = ConfigDict(frozen=True)  # shared by every answer that names the career

    id: str = Field(description="Stable catalog id.", examples=["software_engineer"])
    name: str = Field(description="Name for people.", examples=["Software Engineer"])


class Compatibility(BaseModel):
    """0-100 parts of the fit; a part is null when the student gave nothing it can use."""

    overall: Percent | None = Field(description="Mean of the available parts.", examples=[81.5])
    academic_fit: Percent | None = Field(
        description="Weighted percentile of the student's key-subject scores among students "
        "who chose this career.",
        examples=[88.0],
    )
    interest_fit: Percent | None = Field(
        description="Agreement of the student's RIASEC profile with the career's Holland code "
        "(correlation mapped to 0-100).",
        examples=[75.0],
    )


class FitPoint(BaseModel):
    """One subject or interest where the student stands out, up or down."""

    feature: str = Field(description="The subject or RIASEC dimension.", examples=["math"])
    kind: str = Field(description="`subject` or `interest`.", examples=["subject"])
    value: float = Field(description="The student's value, 0-100.", examples=[92.0])
    typical: float | None = Field(
        description="Median among students who chose this career.", examples=[78.0]
    )
    percentile: float | None = Field(
        description="Student's percentile among those students.", examples=[91.0]
    )


class Recommendation(BaseModel):
    """One recommended career, with why it fits."""

    rank: int = Field(description="1 for the most probable career.", examples=[1])
    career: CareerRef = Field(description="The career.")
    probability: float = Field(
        ge=0, le=1, description="Calibrated probability of this career.", examples=[0.42]
    )
    compatibility: Compatibility = Field(description="How well the student fits it, 0-100.")
    strengths: list[FitPoint] = Field(
        description="Where the student stands above those who chose it."
    )
    gaps: list[FitPoint] = Field(description="Where the student stands below them.")


class PredictResponse(BaseModel):
    """The top-k careers for one student, from one model version."""

    recommendations: list[Recommendation] = Field(description="Most probable career first.")
    model_version: AnsweredBy
    features_used: FeaturesUsed
    imputed: Imputed
    warnings: list[str] = Field(
        description="What the service ignored or assumed (habits the active model does not "
        "use, for one).",
        examples=[["Not used by the active model: habits.part_time_job."]],
    )


class Contribution(BaseModel):
    """How much one feature moves a career's probability."""

    feature: str = Field(description="The feature.", examples=["math"])
    value: float | None = Field(description="The student's value (null when imputed).")
    baseline: float = Field(description="Population median the feature is compared with.")
    contribution: float = Field(
        description="How much the student's value moves this career's probability against the "
        "population median: the mean of (student minus student-with-median) and "
        "(median-student-with-value minus median student)."
    )


class Improvement(BaseModel):
    """A change in one feature that would raise a career's probability."""

    feature: str = Field(description="The feature to change.", examples=["physics"])
    current: float = Field(description="The student's value now.", examples=[64.0])
    suggested: float = Field(description="The value tried.", examples=[80.0])
    probability_gain: float = Field(
        description="The career's probability at the suggested value minus now.", examples=[0.06]
    )


class CohortComparison(BaseModel):
    """The student against the training students who chose the career."""

    students: int = Field(description="Training students who chose this career.")
    percentiles: dict[str, float] = Field(
        description="Student's percentile per given subject among those students."
    )
    interest_distance: float | None = Field(
        description="0 (same RIASEC profile as the cohort's median) to 1 (opposite corners)."
    )


class CareerAnalysis(BaseModel):
    """Why one career fits the student or not."""

    career: CareerRef = Field(description="The career analysed.")
    probability: float = Field(
        description="Calibrated probability of this career.", examples=[0.42]
    )
    compatibility: Compatibility = Field(description="How well the student fits it, 0-100.")
    strengths: list[FitPoint] = Field(
        description="Where the student stands above those who chose it."
    )
    gaps: list[FitPoint] = Field(description="Where the student stands below them.")
    contributions: list[Contribution] = Field(
        description="Each given feature's effect on the probability, largest first."
    )
    comparison: CohortComparison = Field(description="The student against the career's cohort.")
    improvements: list[Improvement] = Field(
        description="Changes that would raise this career's probability most (largest first)."
    )


class AnalyzeResponse(BaseModel):
    """The analysis of each career asked for, from one model version."""

    analyses: list[CareerAnalysis] = Field(description="One per career, most probable first.")
    model_version: AnsweredBy
    features_used: FeaturesUsed
    imputed: Imputed
    warnings: list[str] = Field(description="What the service ignored or assumed.", examples=[[]])


class CatalogCareer(CareerRef):
    """A career of the catalog."""

    description: str = Field(
        description="What the work is, in a sentence.",
        examples=["Designs, builds and maintains software systems."],
    )
    riasec: str = Field(
        description="Holland code, most characteristic letter first.", examples=["ICR"]
    )
    key_subjects: dict[str, float] = Field(
        description="Subject -> weight in the career's academic fit.",
        examples=[{"computer_science": 0.5, "math": 0.35, "physics": 0.15}],
    )
    in_active_model: bool = Field(description="Whether the active model can recommend it.")


class InterestKeyword(BaseModel):
    """An interest keyword a request may use."""

    keyword: str = Field(description="The keyword as requests give it.", examples=["coding"])
    riasec: list[str] = Field(
        description="Dimensions it points at, primary first.",
        examples=[["investigative", "conventional"]],
    )


class InterestVocabulary(BaseModel):
    """The words `interests` understands."""

    riasec: list[str] = Field(
        description="The six RIASEC dimensions `interests.riasec` takes.", examples=[list(RIASEC)]
    )
    keywords: list[InterestKeyword] = Field(description="The keywords `interests.keywords` takes.")


class ModelInfo(VersionFacts):
    """The active model version: its facts, careers and card."""

    careers: list[CareerRef] = Field(description="The careers it can recommend.")
    model_card: str = Field(description="The version's model card (Markdown), for people.")
