"""A Debian with systemd as PID 1 in systemd-nspawn, for the tests that install and run the units for real.

The facts this rests on (docs/RELIABILITY.md, "Under a real systemd"): on a host whose PID 1 is not systemd,
``systemd-nspawn --boot --register=no --keep-unit`` boots a debootstrapped Debian in well under a second, and
``nsenter -t PID -a`` (not machinectl, which needs the host's systemd) runs commands inside it.

Two caches, outside the repository (``$SIAGA_NSPAWN_CACHE``, default ``~/.cache/siaga-nspawn``), make a warm
run cost seconds:

* the root filesystem: debootstrap (bookworm minbase + systemd) once, kept as a zstd tarball keyed by the
  suite, the package list and the mirror;
* the Python wheels of the project's dependencies, built on the host with the host's own pip settings
  (its index, find-links and CA bundle) and keyed by pyproject.toml.  Inside the container
  ``install.sh --wheels DIR`` installs from them offline: the container then needs neither network access
  to a registry nor a copy of the host's credentials and certificates.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from devkit.harness import wait

T = TypeVar("T")

SUITE = "bookworm"
#: libnss-systemd: names of DynamicUser/StateDirectory users resolve; python3-venv: install.sh's venv.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "libnss-systemd", "python3", "python3-venv")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: PATH and locale inside the container: nothing of the host's environment (venv, pip settings) leaks in.
CONTAINER_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "HOME=/root",
    "TERM=dumb",
    "SYSTEMD_PAGER=",
    "SYSTEMD_COLORS=0",
)


class NspawnUnavailable(Exception):
    """This machine cannot boot the container (not root, tools missing, boot failed); the reason says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("SIAGA_NSPAWN_CACHE") or Path.home() / ".cache" / "siaga-nspawn")


def _log(msg: str) -> None:
    print(f"[nspawn] {msg}", file=sys.stderr, flush=True)


def check_host() -> None:
    """Raise NspawnUnavailable naming what is missing."""
    if os.geteuid() != 0:
        raise NspawnUnavailable("needs root (systemd-nspawn and debootstrap need CAP_SYS_ADMIN)")
    missing = [tool for tool in ("systemd-nspawn", "debootstrap", "nsenter", "zstd") if not shutil.which(tool)]
    if missing:
        raise NspawnUnavailable(f"missing {', '.join(missing)} (apt-get install systemd-container debootstrap zstd)")


def debian_mirror() -> str:
    """The host's Debian mirror (deb822 or one-line sources), so debootstrap goes where apt goes."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for stanza in deb822.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, flags=re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, flags=re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
    classic = Path("/etc/apt/sources.list")
    if classic.exists():
        for line in classic.read_text().splitlines():
            m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", line)
            if m:
                return m.group(1)
    return DEFAULT_MIRROR


def rootfs_tarball(cache: Path | None = None) -> Path:
    """The cached rootfs tarball, debootstrapped on first use (~50 s, ~52 MB download)."""
    cache = cache or cache_dir()
    mirror = debian_mirror()
    key = hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)} {mirror}".encode()).hexdigest()[:12]
    tarball = cache / f"rootfs-{SUITE}-{key}.tar.zst"
    if tarball.exists():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    build = cache / f"build-{key}"
    shutil.rmtree(build, ignore_errors=True)
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    _log(f"debootstrap {SUITE} from {mirror} (first run only)")
    started = time.monotonic()
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            f"--cache-dir={debs}",
            SUITE,
            str(build),
            mirror,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=1200,
    )
    subprocess.run(["chroot", str(build), "apt-get", "clean"], check=True, timeout=120)
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "--zstd", "-C", str(build), "-cpf", str(partial), "."], check=True, timeout=600)
    partial.rename(tarball)
    shutil.rmtree(build, ignore_errors=True)
    _log(f"rootfs cached as {tarball} in {time.monotonic() - started:.1f} s")
    return tarball


def wheelhouse(repo: Path, cache: Path | None = None) -> Path:
    """Wheels of the project's dependencies and build requirements (not of the project itself: install.sh
    builds the checkout it is run from), built with the host's pip and its settings."""
    cache = cache or cache_dir()
    key = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()[:12]
    wheels = cache / f"wheels-{key}"
    if (wheels / ".complete").exists():
        return wheels
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    _log(f"building wheels into {wheels} (first run after a dependency change only)")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels)]
    subprocess.run([*pip, str(repo)], check=True, timeout=1800)
    # the isolated build of the checkout inside the container needs its build requirements offline too
    subprocess.run([*pip, "setuptools>=68", "wheel"], check=True, timeout=600)
    for own in wheels.glob("siaga_relay-*.whl"):
        own.unlink()
    (wheels / ".complete").write_text("")
    return wheels


def copy_checkout(repo: Path, dest: Path) -> None:
    """The checkout as git sees it (tracked and untracked-but-not-ignored files): no .venv, no caches."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        src = repo / os.fsdecode(name)
        if not src.exists() or src.is_dir():
            continue  # deleted in the work tree, or a submodule
        target = dest / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


class Container:
    """One booted container: ``boot()``, ``run()`` / ``sh()`` inside it, ``poweroff()``."""

    def __init__(self, rootfs: Path, name: str, *, binds: Sequence[tuple[str, str]] = (), log: Path) -> None:
        self.rootfs = rootfs
        self.name = name
        self.binds = list(binds)
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    def boot(self, timeout: float = 60.0) -> Container:
        argv = [
            "systemd-nspawn",
            "-D",
            str(self.rootfs),
            "--boot",
            # the host has no systemd/D-Bus to register with: without these two, "Failed to open system bus"
            "--register=no",
            "--keep-unit",
            f"--machine={self.name}",
            "--console=read-only",
        ]
        argv += [f"--bind={src}:{dst}" for src, dst in self.binds]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.pid1:
            if self.proc.poll() is not None:
                raise NspawnUnavailable(f"systemd-nspawn exited {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise NspawnUnavailable(f"no container PID 1 after {timeout} s: {self.log_tail()}")
            self.pid1 = self._find_pid1()
            if not self.pid1:
                time.sleep(0.02)
        # PID 1 exists before its bus does ("Failed to connect to bus"): ask until it answers
        state = ""
        while state not in ("running", "degraded"):
            result = self.run(["systemctl", "is-system-running", "--wait"], timeout=timeout)
            state = result.stdout.strip()
            if state in ("maintenance", "stopping", "offline") or time.monotonic() > deadline:
                raise NspawnUnavailable(
                    f"the container's systemd is {state!r} ({result.stderr.strip()}), not running: {self.log_tail()}"
                )
            if not state:
                time.sleep(0.05)
        return self

    def _find_pid1(self) -> int:
        """The container's systemd: nspawn's child whose pid in its own namespace is 1."""
        assert self.proc is not None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            ppid = re.search(r"^PPid:\s*(\d+)", status, flags=re.M)
            nspid = re.search(r"^NSpid:\s*(.+)$", status, flags=re.M)
            if ppid and int(ppid.group(1)) == self.proc.pid and nspid and nspid.group(1).split()[-1] == "1":
                comm = (entry / "comm").read_text().strip()
                if comm == "systemd":
                    return int(entry.name)
        return 0

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def argv(self, argv: Sequence[str]) -> list[str]:
        assert self.pid1, "not booted"
        return ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", *CONTAINER_ENV, *argv]

    def run(
        self, argv: Sequence[str], *, check: bool = False, timeout: float = 120.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(argv), capture_output=True, text=True, timeout=timeout, input=input, errors="replace"
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def sh(self, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-euc", script], **kw)  # type: ignore[arg-type]

    def popen(self, argv: Sequence[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run(["systemctl", "show", unit, "-p", ",".join(props)], check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_unit(
        self, unit: str, predicate: Callable[[dict[str, str]], bool], timeout: float, what: str, *props: str
    ) -> dict[str, str]:
        """Poll ``systemctl show`` until ``predicate`` holds (a state reached, never a fixed sleep)."""
        names = props or ("ActiveState", "SubState", "Result", "NRestarts", "MainPID", "ExecMainStatus")
        deadline = time.monotonic() + timeout
        while True:
            state = self.show(unit, *names)
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                journal = self.run(["journalctl", "-u", unit, "--no-pager", "-n", "40"]).stdout
                raise AssertionError(f"{unit}: {what} not reached in {timeout} s; last {state}\n{journal}")
            time.sleep(0.1)

    def journal(self, unit: str, since_cursor: str | None = None) -> str:
        argv = ["journalctl", "-u", unit, "--no-pager", "-o", "short-iso"]
        return self.run(argv, check=True).stdout

    def poweroff(self, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None and self.pid1:
            subprocess.run(self.argv(["systemctl", "poweroff"]), capture_output=True, timeout=30)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        self.proc = None


def extract(tarball: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "--zstd", "-C", str(dest), "-xpf", str(tarball)], check=True, timeout=600)


def wait_until(predicate: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    return wait.wait_until(predicate, timeout, what, every)


def parse_exposure(text: str) -> tuple[float, str]:
    """``systemd-analyze security UNIT``'s last line: (figure, verdict), e.g. (4.9, "OK")."""
    m = re.search(r"Overall exposure level for \S+:\s*([\d.]+)\s+(\w+)", text)
    if not m:
        raise ValueError(f"no exposure line in {text[-500:]!r}")
    return float(m.group(1)), m.group(2)


def unique_lines(text: str, patterns: Iterable[str]) -> list[str]:
    """The journal lines matching each pattern (the first match of each), for the report."""
    out = []
    for pattern in patterns:
        for line in text.splitlines():
            if re.search(pattern, line):
                out.append(line)
                break
    return out
