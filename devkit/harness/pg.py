"""PostgreSQL for tests: ``$SIAGA_TEST_PG_DSN`` or postgresql://postgres@127.0.0.1:5432/test when reachable.

Each test or benchmark gets its own schema (dropped afterwards).  The ``pg_url`` fixture (tests/conftest.py)
skips when the server is unreachable, unless ``SIAGA_REQUIRE_PG=1`` (CI sets it when it runs a local server),
then the test FAILS.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def pg_dsn() -> str:
    return os.environ.get("SIAGA_TEST_PG_DSN") or DEFAULT_DSN


@contextmanager
def fresh_schema(admin: Any, dsn: str, prefix: str) -> Iterator[str]:
    """A DSN whose search_path is a new schema, dropped (and ``admin``, an autocommit connection, closed)
    afterwards.  Also used by bench/center_ingest.py."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in dsn else "?"
        yield f"{dsn}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
