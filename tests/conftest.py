"""Fixtures shared by the whole suite.  Integration fixtures (mosquitto, simulator) live in their own
modules under tests/ and are imported by the tests that need them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import settings

# CI replays the same examples every run (a landing must not depend on luck); developers' runs explore
# new examples each time and keep failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

from devkit.harness.mosquitto import MOSQUITTO, Mosquitto  # noqa: E402
from devkit.harness.pg import fresh_schema, pg_dsn  # noqa: E402
from devkit.harness.synctools import Center  # noqa: E402

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
SIAGA = [sys.executable, "-m", "cli"]


def write_post_config(directory: Path, post_id: str = "oebubun", extra: str = "") -> Path:
    """A minimal valid post config with its data_dir inside ``directory``."""
    data_dir = directory / "data"
    path = directory / "siaga.toml"
    path.write_text(
        f"""
[node]
post_id = "{post_id}"
regency = "ttu"
name = "Oebubun"
data_dir = "{data_dir}"
lat = -9.3853
lon = 124.3544

[[handsets]]
id = "!a1b2c3d4"
officer = "Yohanes Taek"
village = "Oebubun"
{extra}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def post_config(tmp_path: Path) -> Path:
    return write_post_config(tmp_path)


@pytest.fixture
def run_siaga() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the CLI as a real subprocess (exit codes, stdout and stderr as an operator sees them)."""

    def run(*args: str, config: Path | None = None, input: str | bytes | None = None, **kw: object):
        argv = [*SIAGA]
        if config is not None:
            argv += ["--config", str(config)]
        argv += list(args)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("SIAGA_CONFIG", None)
        text = not isinstance(input, bytes)
        return subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=text,
            env=env,
            timeout=60,
            cwd=REPO,
            **kw,  # type: ignore[call-overload]
        )

    return run


# ------------------------------------------------------------------ chaos and fuzz budgets
# CI runs the chaos and fuzz suites at reduced counts so the whole run stays well inside its time limit;
# `./check --full` (or SIAGA_FULL=1) runs the counts the reliability figures in docs/RELIABILITY.md quote.
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        default=False,
        help="run the chaos and fuzz suites at their full counts (slow: see docs/RELIABILITY.md)",
    )


@dataclass(frozen=True)
class Budget:
    """How hard the chaos and fuzz tests push: ``pick(reduced, full)`` chooses by the run's mode."""

    full: bool

    def pick(self, reduced: T, full: T) -> T:
        return full if self.full else reduced


@pytest.fixture(scope="session")
def budget(pytestconfig: pytest.Config) -> Budget:
    return Budget(full=bool(pytestconfig.getoption("--full")) or os.environ.get("SIAGA_FULL") == "1")


# ---------------------------------------------------------------------------- shared integration fixtures
# A broker per test, a center on it, a PostgreSQL schema per test (devkit/harness/ holds the parts).
@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if not os.path.exists(MOSQUITTO):
        pytest.fail("mosquitto is not installed (run ./install.sh --dev)")
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        yield broker
    finally:
        broker.stop(kill=True)


def _unavailable(reason: str) -> None:
    if os.environ.get("SIAGA_REQUIRE_PG") == "1":
        pytest.fail(f"PostgreSQL required (SIAGA_REQUIRE_PG=1) but {reason}")
    pytest.skip(f"PostgreSQL not reachable ({reason}); set SIAGA_TEST_PG_DSN to run these tests")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A DSN whose search_path is a fresh schema of its own."""
    import psycopg

    dsn = pg_dsn()
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        _unavailable(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise  # unreachable: skip/fail raise
    with fresh_schema(admin, dsn, "t") as url:
        yield url


@pytest.fixture
def center(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Center]:
    """A center (receiver + storage in SQLite) on the test's broker, stopped after the test."""
    c = Center(f"sqlite:///{tmp_path}/center.db", [mosquitto.url]).start()
    try:
        yield c
    finally:
        c.stop()
