"""install.sh as a newcomer and an operator run it: the README's set-up in a fresh clone, and the system
mode (what `sudo ./install.sh` does on a Pi) into a temporary root."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _readme_command(kind: str) -> str:
    """The README's two commands: 'main job' and 'tests'."""
    text = (REPO / "README.md").read_text()
    commands = re.findall(r"^    (\./install\.sh --dev && .+)$", text, flags=re.M)
    assert len(commands) == 2, commands
    return commands[0] if kind == "main" else commands[1]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert _readme_command("tests") in ci.splitlines()


def _clone(tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    return clone


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "SIAGA"))}
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if ".venv" not in p)
    return env


def test_readme_setup_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = _clone(tmp_path)
    setup = _readme_command("tests").split(" && ")[0]
    result = subprocess.run(setup, shell=True, cwd=clone, env=_clean_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    siaga = clone / ".venv" / "bin" / "siaga"
    assert siaga.exists()
    # idempotent: a second run changes nothing and succeeds
    again = subprocess.run(setup, shell=True, cwd=clone, env=_clean_env(), capture_output=True, timeout=900)
    assert again.returncode == 0
    out = subprocess.run([str(siaga), "classify", "--json", "tlg ada kbakaran"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["category"] == "kebakaran"
    config = tmp_path / "siaga.toml"
    config.write_text(f'[node]\npost_id = "uji"\ndata_dir = "{tmp_path / "data"}"\n')
    out = subprocess.run(
        [str(siaga), "--config", str(config), "report", "--json", "BANJIR"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["report_id"]
    # the README's main job from the clone: the demo, bounded in time, loses nothing
    main = _readme_command("main").split(" && ")[1]
    demo = subprocess.run(
        f"{main} --duration 80 --json",
        shell=True,
        cwd=clone,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    summary = json.loads(demo.stdout)
    assert summary["lost"] == 0 and summary["delivered"] == summary["generated"]
    # the editable install points at the clone, not at the repo the tests run from
    where = subprocess.run(
        [str(clone / ".venv" / "bin" / "python"), "-c", "import edge; print(edge.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert where.stdout.strip().startswith(str(clone))


def _fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\ndialout:x:20:\n")
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc" / "gshadow").write_text("root:*::\ndialout:*::\n")
    return root


@pytest.mark.skipif(os.geteuid() != 0, reason="system mode installs as root")
def test_system_mode_into_a_temp_root(tmp_path: Path) -> None:
    root = _fake_root(tmp_path)
    install = [str(REPO / "install.sh"), "--root", str(root)]
    result = subprocess.run(install, capture_output=True, text=True, timeout=900, env=_clean_env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    passwd = (root / "etc" / "passwd").read_text()
    assert re.search(r"^siaga:x:\d+:\d+:.*:/var/lib/siaga:/usr/sbin/nologin$", passwd, flags=re.M)
    assert re.search(r"^dialout:x:20:.*siaga", (root / "etc" / "group").read_text(), flags=re.M)
    config = root / "etc" / "siaga" / "siaga.toml"
    assert config.read_text() == (REPO / "systemd" / "siaga.example.toml").read_text()
    assert (root / "var" / "lib" / "siaga").is_dir()
    unit = root / "etc" / "systemd" / "system" / "siaga.service"
    assert unit.is_file()
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "siaga.service"
    assert wants.is_symlink()
    assert (root / "etc" / "systemd" / "system" / "siaga-center.service").is_file()
    udev = root / "etc" / "udev" / "rules.d" / "99-meshtastic.rules"
    assert 'SYMLINK+="meshtastic"' in udev.read_text()
    siaga = root / "opt" / "siaga" / "bin" / "siaga"
    out = subprocess.run([str(siaga), "--config", str(config), "config", "check"], capture_output=True, text=True)
    # the example names /var/lib/siaga as data_dir; as root that check passes on this machine
    assert out.returncode == 0, out.stderr

    # an operator's edits survive a re-install
    config.write_text(config.read_text().replace('post_id = "oebubun"', 'post_id = "eban"'))
    result = subprocess.run(install, capture_output=True, text=True, timeout=900, env=_clean_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'post_id = "eban"' in config.read_text()

    # uninstall keeps data and config; --purge removes them
    data_file = root / "var" / "lib" / "siaga" / "post.db"
    data_file.write_bytes(b"")
    result = subprocess.run([*install, "--uninstall"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (root / "opt" / "siaga").exists() and not unit.exists() and not udev.exists()
    assert data_file.exists() and config.exists()
    result = subprocess.run([*install, "--uninstall", "--purge"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not data_file.exists() and not config.exists()
    shutil.rmtree(root, ignore_errors=True)
