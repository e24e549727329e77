"""Career catalog entries: what a career is, its RIASEC code and the subjects that matter."""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from app.domain.enums import RIASEC

# The default catalog: 25 careers, each with its Holland code and key subjects.
CATALOG_PATH = Path(__file__).with_name("careers.json")
_LETTER_TO_DIM = {dim[0].upper(): dim for dim in RIASEC}
# Weight of the 1st, 2nd and 3rd letter of a Holland code in a career's interest profile.
_CODE_WEIGHTS = (1.0, 0.66, 0.33)


def career_id(name: str) -> str:
    """Stable identifier of a career label: 'Software Engineer' -> 'software_engineer'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass(frozen=True)
class Career:
    """One career of the catalog."""

    name: str
    riasec: str = ""
    description: str = ""
    subjects: Mapping[str, float] = field(default_factory=dict)
    popularity: float = 1.0

    @property
    def id(self) -> str:
        return career_id(self.name)

    def interest_profile(self) -> dict[str, float]:
        """The RIASEC profile implied by the Holland code (unmentioned letters weigh 0)."""
        profile = dict.fromkeys(RIASEC, 0.0)
        for letter, weight in zip(self.riasec.upper(), _CODE_WEIGHTS, strict=False):
            profile[_LETTER_TO_DIM[letter]] = weight
        return profile

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "riasec": self.riasec,
            "description": self.description,
            "subjects": dict(self.subjects),
            "popularity": self.popularity,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Career":
        code = str(data.get("riasec", "")).upper()
        if any(letter not in _LETTER_TO_DIM for letter in code):
            raise ValueError(f"career {data.get('name')!r} has an invalid RIASEC code {code!r}")
        return cls(
            name=str(data["name"]),
            riasec=code,
            description=str(data.get("description", "")),
            subjects={str(k): float(v) for k, v in dict(data.get("subjects", {})).items()},
            popularity=float(data.get("popularity", 1.0)),
        )


def load_catalog(data: Mapping[str, Any]) -> list[Career]:
    """Careers from a catalog document `{"careers": [...]}`."""
    return [Career.from_dict(item) for item in data["careers"]]


@cache
def _default_catalog() -> tuple[Career, ...]:
    return tuple(load_catalog(json.loads(CATALOG_PATH.read_text(encoding="utf-8"))))


def default_catalog() -> list[Career]:
    """The catalog the default model is generated from, read once per process."""
    return list(_default_catalog())
