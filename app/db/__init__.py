"""The service's relational database: the outcome store's tables and their migrations.

SQLAlchemy 2 (Core) over SQLite by default or PostgreSQL; Alembic migrations in
`migrations/`, applied on first use and by `python -m app.db upgrade`.
"""
