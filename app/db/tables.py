"""The tables of the outcome store. Alembic's migrations create them; this module is what
the code reads and writes through (and what `alembic revision --autogenerate` compares)."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, stored as naive UTC: SQLite has no
    time zones, and one convention on both databases keeps comparisons exact."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if isinstance(value, datetime) else value


# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
Id = BigInteger().with_variant(Integer(), "sqlite")

outcomes = Table(
    "outcomes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("observed_at", UTCDateTime(), nullable=False),
    # Monday of observed_at's ISO week (YYYY-MM-DD): weekly counts without dialect SQL.
    Column("week", String(10), nullable=False),
    Column("career", String(100), nullable=False),
    # Feature name -> value, as the model that validated it reads the student (no raw input).
    Column("features", JSON(), nullable=False),
    # HMAC-SHA256 (hex) of the gateway's pseudonymous subject id and of the idempotency key:
    # never the values themselves.
    Column("subject_hash", String(64), nullable=True),
    Column("idempotency_hash", String(64), nullable=True, unique=True),
    # How the model active on arrival scored it: the live quality of that version.
    Column("model_version", String(120), nullable=True),
    Column("top1_correct", Boolean(), nullable=True),
    Column("log_loss", Float(), nullable=True),
    Index("ix_outcomes_observed_at", "observed_at"),
    Index("ix_outcomes_received_at", "received_at"),
    Index("ix_outcomes_subject_hash", "subject_hash"),
    Index("ix_outcomes_model_version", "model_version"),
)
