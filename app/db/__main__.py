"""`python -m app.db upgrade | current | downgrade REVISION`: the outcome store's schema,
on DATABASE_URL (or the default SQLite file in CAREER_MODEL_DIR). The service also
upgrades by itself on first use; this command is for deploy pipelines and operators."""

import argparse
import sys

from app.config import get_settings
from app.db import migrate
from app.db.engine import database_url, make_engine, redacted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.db", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("upgrade", help="migrate to the newest schema")
    sub.add_parser("current", help="print the schema revision of the database")
    down = sub.add_parser("downgrade", help="migrate back to REVISION (base = empty)")
    down.add_argument("revision")
    args = parser.parse_args(argv)
    url = database_url(get_settings())
    engine = make_engine(url, pooled=False)
    try:
        if args.command == "upgrade":
            now = migrate.upgrade(engine)
            print(f"{redacted(url)}: at revision {now} (newest {migrate.head()})")
        elif args.command == "current":
            with engine.connect() as connection:
                print(f"{redacted(url)}: at revision {migrate.current(connection)}")
        else:
            now = migrate.downgrade(engine, args.revision)
            print(f"{redacted(url)}: at revision {now}")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
