"""The `siaga` command line as an operator uses it: real subprocesses, real files."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from cli.main import build_parser
from edge.store import Store
from tests.conftest import REPO, write_post_config


def test_every_command_has_help() -> None:
    parser = build_parser()
    missing = []

    def walk(p: argparse.ArgumentParser, prefix: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{prefix} {name}".strip())
                    walk(sub, f"{prefix} {name}")
            elif action.dest != "help" and not action.help:
                missing.append(f"{prefix} {action.dest}")

    walk(parser, "siaga")
    assert not missing, f"commands/options without help text: {missing}"


def test_report_queue_status_round_trip(post_config: Path, run_siaga) -> None:
    result = run_siaga(
        "report", "--json", "--origin", "!a1b2c3d4", "tlg ada kbakaran di rumah warga", config=post_config
    )
    assert result.returncode == 0, result.stderr
    report_id = json.loads(result.stdout)["report_id"]

    result = run_siaga("report", "--lat", "-9.45", "--lon", "124.48", "BANJIR dusun 2", config=post_config)
    assert result.returncode == 0, result.stderr
    assert "Laporan tersimpan #" in result.stdout and "BANJIR" in result.stdout

    result = run_siaga("queue", "--json", config=post_config)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    by_id = {r["report_id"]: r for r in rows}
    first = by_id[report_id]
    assert first["state"] == "pending" and first["category"] == "kebakaran"
    assert first["origin"] == "!a1b2c3d4" and first["copies"] == 1
    assert first["text_raw"] == "tlg ada kbakaran di rumah warga"
    assert first["verified"] is True and first["callback"]["officer"] == "Yohanes Taek"
    assert first["loc_source"] == "post"
    flood = next(r for r in rows if r["category"] == "banjir")
    assert (flood["lat"], flood["lon"], flood["loc_source"]) == (-9.45, 124.48, "operator")
    assert flood["origin"].startswith("operator:")

    result = run_siaga("queue", config=post_config)
    assert "menunggu" in result.stdout and "KEBAKARAN" in result.stdout

    result = run_siaga("status", "--json", config=post_config)
    status = json.loads(result.stdout)
    assert status["queue"] == {"pending": 2, "sent": 0, "delivered": 0, "rejected": 0}
    assert result.returncode == 1  # no daemon running: needs attention
    assert "daemon_not_running" in status["attention"]
    result = run_siaga("status", config=post_config)
    assert "Laporan menunggu" in result.stdout and "PERLU PERHATIAN" in result.stdout


def test_classify_json(run_siaga) -> None:
    result = run_siaga("classify", "--json", "tiga orang luka kecelakaan motor")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["category"] == "kecelakaan"
    assert data["casualties"]["injured"] == 3
    assert set(data) >= {"category", "urgency", "severity", "casualties"}


def test_text_over_4_kib_is_refused(post_config: Path, run_siaga) -> None:
    result = run_siaga("report", "a" * 4097, config=post_config)
    assert result.returncode == 1
    assert "4096 bytes" in result.stderr
    assert _count(post_config) == 0


def test_invalid_utf8_is_refused(post_config: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [
        sys.executable.encode(),
        b"-m",
        b"cli",
        b"--config",
        str(post_config).encode(),
        b"report",
        b"rumah \xff\xfe terbakar",
    ]
    result = subprocess.run(argv, capture_output=True, env=env, cwd=REPO, timeout=60)
    assert result.returncode == 1
    assert b"UTF-8" in result.stderr
    result = subprocess.run(
        [*argv[:-1], b"-"], input=b"banjir \xc3\x28", capture_output=True, env=env, cwd=REPO, timeout=60
    )
    assert result.returncode == 1
    assert b"UTF-8" in result.stderr
    assert _count(post_config) == 0


def test_report_from_stdin(post_config: Path, run_siaga) -> None:
    result = run_siaga("report", "--json", "-", config=post_config, input="longsor menimpa jalan desa")
    assert result.returncode == 0, result.stderr
    assert _count(post_config) == 1


def test_usage_errors_exit_2(post_config: Path, run_siaga) -> None:
    assert run_siaga("report", config=post_config).returncode == 2
    assert run_siaga("nonsense", config=post_config).returncode == 2
    result = run_siaga("report", "--lat", "-9.4", "BANJIR", config=post_config)
    assert result.returncode == 1 and "--lon" in result.stderr


def test_disk_full_cli_exit_1_nothing_half_stored(tmp_path: Path) -> None:
    """The data_dir on a tiny tmpfs: reports go in until the disk is full, then a clear error, exit 1,
    and the store keeps every report that was acknowledged."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    assert mounted.returncode == 0, f"this test needs root to mount a tmpfs: {mounted.stderr!r}"
    try:
        config = write_post_config(mount)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        stored = 0
        failure = None
        for i in range(200):
            result = subprocess.run(
                [sys.executable, "-m", "cli", "--config", str(config), "report", f"BANJIR {i} " + "x" * 3000],
                capture_output=True,
                text=True,
                env=env,
                cwd=REPO,
                timeout=60,
            )
            if result.returncode != 0:
                failure = result
                break
            stored += 1
        assert failure is not None, "the tmpfs never filled up"
        assert failure.returncode == 1, failure.stderr
        assert "disk" in failure.stderr and "full" in failure.stderr, failure.stderr
        assert "Traceback" not in failure.stderr
        with Store.open(mount / "data" / "post.db", check=True) as store:
            assert store.integrity_ok()
            assert store.counts()["pending"] == stored
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _count(config: Path) -> int:
    db = config.parent / "data" / "post.db"
    if not db.exists():
        return 0
    with Store.open(db) as store:
        return sum(store.counts().values())


# ---------------------------------------------------------------------------- relay keys
def test_relay_secret_then_a_posts_key(tmp_path: Path, run_siaga) -> None:
    import stat

    from sync.compact import derive_post_key

    secret = tmp_path / "relay-secret.hex"
    made = run_siaga("center", "relay-secret", "--out", str(secret))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    raw = bytes.fromhex(secret.read_text().strip())
    assert len(raw) == 32
    # never overwritten: the posts' keys derive from it
    again = run_siaga("center", "relay-secret", "--out", str(secret))
    assert again.returncode == 1 and "already exists" in again.stderr
    assert bytes.fromhex(secret.read_text().strip()) == raw

    key = run_siaga("relay", "key", "--secret-file", str(secret), "--post", "oebubun")
    assert key.returncode == 0, key.stderr
    assert key.stdout.strip() == derive_post_key(raw, "oebubun", 0).hex()
    epoch3 = run_siaga("relay", "key", "--secret-file", str(secret), "--post", "oebubun", "--epoch", "3")
    assert epoch3.stdout.strip() == derive_post_key(raw, "oebubun", 3).hex() != key.stdout.strip()
    out = tmp_path / "oebubun.key"
    written = run_siaga("relay", "key", "--secret-file", str(secret), "--post", "oebubun", "--out", str(out))
    assert written.returncode == 0 and written.stdout == ""
    assert out.read_text().strip() == key.stdout.strip() and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_relay_key_refuses_bad_input(tmp_path: Path, run_siaga) -> None:
    secret = tmp_path / "secret.hex"
    secret.write_text("ab" * 32)
    secret.chmod(0o644)
    loose = run_siaga("relay", "key", "--secret-file", str(secret), "--post", "oebubun")
    assert loose.returncode == 78 and "readable by other users" in loose.stderr and loose.stdout == ""
    secret.chmod(0o600)
    for bad in (["--post", "Oebubun!"], ["--post", "oebubun", "--epoch", "256"], ["--post", "oebubun", "--epoch", "x"]):
        done = run_siaga("relay", "key", "--secret-file", str(secret), *bad)
        assert done.returncode == 2 and done.stdout == "", done.stderr
    short = tmp_path / "short.hex"
    short.write_text("ab" * 16)
    short.chmod(0o600)
    done = run_siaga("relay", "key", "--secret-file", str(short), "--post", "oebubun")
    assert done.returncode == 78 and "at least 32" in done.stderr


def test_center_reports_json_says_what_its_limit_left_out(tmp_path: Path, run_siaga) -> None:
    """Found when tried: ``--json`` silently stopped at the default 50 rows and misled a script counting."""
    from center.storage import open_storage
    from tests.test_center_storage import incoming, make_report

    db = f"sqlite:///{tmp_path}/center.db"
    with open_storage(db) as storage:
        storage.ingest([incoming(make_report(f"KEBAKARAN {i}")) for i in range(60)])
    conf = tmp_path / "center.toml"
    conf.write_text(f'[center]\ndb = "{db}"\n', encoding="utf-8")
    capped = run_siaga("center", "reports", "--json", config=conf)
    assert capped.returncode == 0, capped.stderr
    assert len(json.loads(capped.stdout)) == 50
    assert "10 laporan lain tidak ditampilkan (50 dari 60)" in capped.stderr
    everything = run_siaga("center", "reports", "--json", "--limit", "0", config=conf)
    assert len(json.loads(everything.stdout)) == 60 and "tidak ditampilkan" not in everything.stderr
    assert len({r["report_id"] for r in json.loads(everything.stdout)}) == 60
    text = run_siaga("center", "reports", "--limit", "5", config=conf)
    assert len(text.stdout.splitlines()) == 5 and "55 laporan lain" in text.stderr
