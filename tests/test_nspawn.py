"""The post and the center installed and run under a real systemd: a Debian booted in systemd-nspawn (systemd
as PID 1), ``./install.sh`` run inside it as an operator runs it, and the units' notify, watchdog, restart and
hardening exercised for real (docs/RELIABILITY.md, "Under a real systemd").

Real parts: the simulated radio runs on the host on a pty that is bound into the container as
/dev/meshtastic (the name the udev rule gives a real radio); a Mosquitto and a center receiver run on the
host (the container shares the host's network).  The tests run in file order and share one container: each
builds on the state the one before left (installed, configured, running).

Under CI (``CI=true``) or ``SIAGA_REQUIRE_NSPAWN=1`` a container that cannot boot fails the suite; elsewhere
it is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from devkit.harness import nspawn
from devkit.harness.mosquitto import Mosquitto, free_port
from devkit.harness.synctools import Center, center_report_ids
from devkit.sim.device import SimulatedDevice
from tests.conftest import REPO

T = TypeVar("T")

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.timeout(900)]

POST_ID = "nspawn1"
HANDSET = "!a1b2c3d4"  # registered in the example config (officer Yohanes Taek)
DB = "/var/lib/siaga/post.db"


def _required() -> bool:
    return os.environ.get("SIAGA_REQUIRE_NSPAWN") == "1" or os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if _required():
        pytest.fail(f"the systemd-nspawn suite is required here (CI / SIAGA_REQUIRE_NSPAWN=1) but {reason}")
    pytest.skip(f"systemd-nspawn container unavailable: {reason}")


@dataclass
class Rig:
    container: nspawn.Container
    device: SimulatedDevice
    broker: Mosquitto
    center: Center
    http_port: int
    timings: dict[str, float] = field(default_factory=dict)
    device_probe: str = ""

    def run(self, *argv: str, **kw: object):  # type: ignore[no-untyped-def]
        return self.container.run(argv, **kw)  # type: ignore[arg-type]

    def sh(self, script: str, **kw: object):  # type: ignore[no-untyped-def]
        return self.container.sh(script, **kw)

    def wait(self, predicate: Callable[[], T], timeout: float, what: str) -> T:
        """nspawn.wait_until, with the units' journal in the failure."""
        try:
            return nspawn.wait_until(predicate, timeout, what)
        except AssertionError as exc:
            journal = self.run("journalctl", "-u", "siaga", "-u", "siaga-center", "--no-pager", "-n", "60").stdout
            raise AssertionError(f"{exc}\n{journal}") from None

    def center_ids(self) -> list[str]:
        return center_report_ids(self.center.storage)

    def post_states(self) -> dict[str, str]:
        """report_id → state, read from the post's store inside the container."""
        out = self.run(
            "python3",
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]);"
            "[print(r[0], r[1]) for r in c.execute('SELECT report_id, state FROM reports')]",
            DB,
            check=True,
        ).stdout
        return dict(line.split() for line in out.splitlines())

    def texts_at_center(self) -> list[str]:
        rows = self.center.storage.query("SELECT text_raw FROM reports")
        return sorted(str(r["text_raw"]) for r in rows)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    try:
        nspawn.check_host()
    except nspawn.NspawnUnavailable as exc:
        _unavailable(str(exc))
    base = tmp_path_factory.mktemp("nspawn")
    timings: dict[str, float] = {}
    started = time.monotonic()
    tarball = nspawn.rootfs_tarball()
    wheels = nspawn.wheelhouse(REPO)
    timings["caches"] = time.monotonic() - started
    t = time.monotonic()
    rootfs = base / "rootfs"
    nspawn.extract(tarball, rootfs)
    nspawn.copy_checkout(REPO, rootfs / "root" / "siaga")
    shutil.copytree(wheels, rootfs / "root" / "wheels")
    timings["extract"] = time.monotonic() - t

    broker = Mosquitto(base / "broker").start()
    center = Center(f"sqlite:///{base}/center.db", [broker.url]).start()
    device = SimulatedDevice(pty_path=base / "ttySIM", seed=16, speed=20.0, record_path=base / "sent.jsonl")
    device.start()
    pty = os.path.realpath(device.pty_path or "")
    container = nspawn.Container(
        rootfs, f"siaga-test-{os.getpid()}", binds=[(pty, "/dev/meshtastic")], log=base / "console.log"
    )
    try:
        t = time.monotonic()
        try:
            container.boot()
        except nspawn.NspawnUnavailable as exc:
            _unavailable(str(exc))
        timings["boot"] = time.monotonic() - t
        # what the udev rule does for a real radio: group dialout (the container's gid), mode 0660
        dialout = container.run(["getent", "group", "dialout"], check=True).stdout.split(":")[2]
        os.chown(pty, -1, int(dialout))
        os.chmod(pty, 0o660)
        rig = Rig(container, device, broker, center, free_port(), timings)
        yield rig
    finally:
        container.poweroff()
        device.stop()
        center.stop()
        broker.stop(kill=True)
        shutil.rmtree(rootfs, ignore_errors=True)
        print(f"\n[nspawn] timings: { {k: round(v, 1) for k, v in timings.items()} }")


def _configure(rig: Rig) -> None:
    """What the operator edits in /etc/siaga/siaga.toml: the post id, the uplink, the center's addresses."""
    rig.sh(
        f"""
        f=/etc/siaga/siaga.toml
        sed -i 's/^post_id = "oebubun"/post_id = "{POST_ID}"/' $f
        sed -i 's|^urls = \\[.*|urls = ["{rig.broker.url}"]|' $f
        sed -i 's|^url = "mqtts://127.0.0.1:8883"|url = "{rig.broker.url}"|' $f
        sed -i 's|^http = "127.0.0.1:8112"|http = "127.0.0.1:{rig.http_port}"|' $f
        grep -q '^port = "/dev/meshtastic"' $f
        """,
        check=True,
    )


def test_install_in_system_mode_and_check_the_config(rig: Rig) -> None:
    t = time.monotonic()
    out = rig.sh("cd /root/siaga && ./install.sh --wheels /root/wheels", check=True, timeout=600)
    rig.timings["install"] = time.monotonic() - t
    assert "enabled siaga.service" in out.stdout, out.stdout
    assert rig.run("id", "-nG", "siaga", check=True).stdout.split() == ["siaga", "dialout"]
    assert rig.run("systemctl", "is-enabled", "siaga.service").stdout.strip() == "enabled"
    assert rig.run("test", "-f", "/etc/udev/rules.d/99-meshtastic.rules").returncode == 0
    # the example as installed names the post "oebubun": valid as it stands, then the operator's edits
    _configure(rig)
    check = rig.run("siaga", "config", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert POST_ID in check.stdout + check.stderr


def test_post_runs_under_systemd_and_status_shows_it(rig: Rig) -> None:
    rig.run("systemctl", "start", "siaga", check=True, timeout=120)
    # Type=notify: "active" only after READY=1 (store open, radio connecting)
    state = rig.container.wait_unit("siaga", lambda s: s["ActiveState"] == "active", 60, "active")
    assert state["NRestarts"] == "0"
    rig.wait(lambda: rig.device.handshakes >= 1, 60, "the post's handshake with the radio")
    rig.device.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
    for i in range(3):
        rig.device.inject_text(HANDSET, f"KEBAKARAN rumah warga nomor {i}")
    rig.wait(lambda: len(rig.texts_at_center()) >= 3, 60, "three reports delivered to the center")
    rig.wait(lambda: sorted(rig.post_states().values()) == ["delivered"] * 3, 60, "the post marking them delivered")
    status = rig.run("siaga", "status")
    print(status.stdout)
    journal = rig.run("journalctl", "-u", "siaga", "--no-pager", "-n", "30").stdout
    runtime = rig.run("cat", "/run/siaga/runtime.json").stdout
    assert status.returncode == 0, status.stdout + status.stderr + runtime + journal
    assert "Radio          : terhubung" in status.stdout
    assert "Diterima 112   : 3" in status.stdout
    assert "Semua baik." in status.stdout


def test_watchdog_restarts_a_stalled_radio_reader_and_no_stored_report_is_lost(rig: Rig) -> None:
    c = rig.container
    # A short watchdog as an operator would set one (a drop-in); the daemon's stuck threshold follows it.
    rig.sh(
        "mkdir -p /etc/systemd/system/siaga.service.d && "
        "printf '[Service]\\nWatchdogSec=4\\n' > /etc/systemd/system/siaga.service.d/watchdog.conf && "
        "systemctl daemon-reload && systemctl restart siaga",
        check=True,
        timeout=120,
    )
    before = c.wait_unit("siaga", lambda s: s["ActiveState"] == "active", 60, "active after the drop-in")
    restarts = int(before["NRestarts"])
    handshakes = rig.device.handshakes
    rig.wait(lambda: rig.device.handshakes > handshakes, 60, "the post's new handshake")
    stored_before = rig.post_states()
    assert len(stored_before) == 3

    # Another process holds the store's write lock (as tests/test_watchdog.py does): the radio reader stalls.
    locker = c.popen(
        [
            "python3",
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30);"
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.readline(); c.execute('ROLLBACK')",
            DB,
        ]
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        cursor = c.run(["journalctl", "--show-cursor", "-n", "0", "-q"]).stdout.strip().split("cursor: ")[-1]
        for i in range(3):
            rig.device.inject_text(HANDSET, f"BANJIR jembatan putus nomor {i}")
        killed = c.wait_unit("siaga", lambda s: s["Result"] == "watchdog", 60, "a watchdog kill")
        print("after the kill:", killed)
    finally:
        assert locker.stdin is not None
        locker.stdin.write("\n")
        locker.stdin.close()
        locker.wait(30)
        for pipe in (locker.stdout, locker.stderr):
            if pipe is not None:
                pipe.close()
    after = c.wait_unit(
        "siaga",
        lambda s: int(s["NRestarts"]) == restarts + 1 and s["ActiveState"] == "active",
        60,
        "restarted by systemd and active",
    )
    assert after["Result"] == "success"
    journal = c.run(["journalctl", "-u", "siaga", "--no-pager", "-o", "short-iso", f"--after-cursor={cursor}"]).stdout
    lines = nspawn.unique_lines(
        journal,
        [
            r"Watchdog timeout \(limit 4s\)!",
            r"Killing process \d+ \(siaga\) with signal SIGABRT",
            r"Failed with result 'watchdog'",
            r"Scheduled restart job, restart counter is at",
            r"Started siaga.service",
        ],
    )
    print("\n".join(lines))
    assert len(lines) == 5, journal[-3000:]

    # every report stored before the stall is still there and reaches the center; the radio works again
    stored_after = rig.post_states()
    assert set(stored_before) <= set(stored_after)
    rig.device.inject_text(HANDSET, "LONGSOR jalan desa tertutup")
    rig.wait(lambda: "LONGSOR jalan desa tertutup" in rig.texts_at_center(), 60, "a report after the restart delivered")
    states = rig.wait(
        lambda: (s := rig.post_states()) and all(v == "delivered" for v in s.values()) and s,
        60,
        "everything the post stored delivered",
    )
    assert set(rig.center_ids()) >= set(states), "a stored report never reached the center"
    rig.sh("rm -r /etc/systemd/system/siaga.service.d && systemctl daemon-reload", check=True)


def test_bad_config_exits_78_and_is_not_restarted(rig: Rig) -> None:
    c = rig.container
    rig.sh(
        "cp /etc/siaga/siaga.toml /root/siaga.toml.good && "
        f'sed -i \'s/^post_id = "{POST_ID}"/post_id = "Pos Satu!"/\' /etc/siaga/siaga.toml',
        check=True,
    )
    cursor = c.run(["journalctl", "--show-cursor", "-n", "0", "-q"]).stdout.strip().split("cursor: ")[-1]
    c.run(["systemctl", "restart", "siaga"], timeout=120)  # fails: that is the point
    state = c.wait_unit("siaga", lambda s: s["ActiveState"] == "failed", 60, "failed")
    assert state["ExecMainStatus"] == "78" and state["Result"] == "exit-code", state
    # the operator's restart reset the counter; "failed" (not "auto-restart") means none is scheduled
    assert state["NRestarts"] == "0" and state["SubState"] == "failed", state
    status = c.run(["systemctl", "status", "siaga", "--no-pager", "-n", "20"]).stdout
    print(status)
    assert "status=78/CONFIG" in status
    assert "config error: node.post_id" in status
    journal = c.run(["journalctl", "-u", "siaga", "--no-pager", "-o", "short-iso", f"--after-cursor={cursor}"]).stdout
    print("\n".join(nspawn.unique_lines(journal, [r"config error", r"status=78/CONFIG", r"Failed with result"])))
    assert "Scheduled restart job" not in journal
    # the operator fixes the file and starts it again
    rig.sh("cp /root/siaga.toml.good /etc/siaga/siaga.toml && systemctl start siaga", check=True, timeout=120)
    c.wait_unit("siaga", lambda s: s["ActiveState"] == "active", 60, "active after the fix")


#: [Service] settings that are not the sandbox (how the unit starts, restarts, notifies, logs).
_NOT_SANDBOX = {
    "Type",
    "NotifyAccess",
    "WatchdogSec",
    "ExecStart",
    "Restart",
    "RestartSec",
    "RestartPreventExitStatus",
    "TimeoutStopSec",
    "RuntimeDirectory",
    "RuntimeDirectoryPreserve",
    "Environment",
}

#: Run inside the unit's sandbox: what it can open and write.  Prints "what errno-name" per line.
_PROBE = r"""
import errno, os, socket, sys
def attempt(what, fn):
    try:
        fn()
        print(what, "OK")
    except OSError as exc:
        print(what, errno.errorcode.get(exc.errno, exc.errno))
def write(path):
    def fn():
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
    return fn
def dev(path):
    return lambda: os.close(os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
attempt("write /var/lib/siaga", write("/var/lib/siaga/.probe"))
attempt("write /etc/siaga", write("/etc/siaga/.probe"))
attempt("write /opt/siaga", write("/opt/siaga/.probe"))
attempt("write /usr/local", write("/usr/local/.probe"))
attempt("write /var/tmp", write("/var/tmp/.probe"))
attempt("open /dev/meshtastic", dev("/dev/meshtastic"))
attempt("open /dev/ttyS9", dev("/dev/ttyS9"))
attempt("socket AF_PACKET", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close())
print("uid", os.getuid(), "groups", sorted(os.getgroups()))
"""


def _sandbox_properties(rig: Rig, unit: str) -> list[str]:
    """The unit's own sandbox settings, as systemd-run -p arguments (a probe then runs in the same sandbox)."""
    text = rig.run("systemctl", "cat", unit, check=True).stdout
    props, section = [], ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#") and "=" in line:
            key = line.split("=", 1)[0]
            if key not in _NOT_SANDBOX:
                props += ["-p", line]
    return props


def _exposure(rig: Rig, unit: str) -> tuple[float, str]:
    out = rig.run("systemd-analyze", "security", unit, "--no-pager")
    figure = nspawn.parse_exposure(out.stdout)
    print(f"systemd-analyze security {unit}: {figure[0]} {figure[1]}")
    return figure


def test_hardening_holds_without_breaking_the_job(rig: Rig) -> None:
    c = rig.container
    state = c.wait_unit("siaga", lambda s: s["ActiveState"] == "active", 60, "active")
    uid = rig.run("id", "-u", "siaga", check=True).stdout.strip()
    proc = rig.run("cat", f"/proc/{state['MainPID']}/status", check=True).stdout
    assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s+{uid}\s+{uid}$", proc, flags=re.M), proc
    assert re.search(r"^CapEff:\s+0+$", proc, flags=re.M), proc
    # A serial port that is not a radio (ttyS9), mode 0666 so only the unit's device policy can refuse it.
    rig.run("mknod", "-m", "0666", "/dev/ttyS9", "c", "4", "73", check=True)
    out = rig.run(
        "systemd-run", "--wait", "--pipe", "--quiet", *_sandbox_properties(rig, "siaga"), "python3", "-c", _PROBE
    )
    print(out.stdout, out.stderr)
    got = dict(line.rsplit(" ", 1) for line in out.stdout.splitlines() if not line.startswith("uid"))
    assert got["write /var/lib/siaga"] == "OK"
    for path in ("/etc/siaga", "/opt/siaga", "/usr/local"):
        assert got[f"write {path}"] == "EROFS", (path, got)
    assert got["write /var/tmp"] == "OK"  # PrivateTmp: its own, discarded when it stops
    assert got["open /dev/meshtastic"] == "OK"
    policy = c.show("siaga", "DevicePolicy", "DeviceAllow")
    assert policy["DevicePolicy"] == "closed", policy
    rig.device_probe = got["open /dev/ttyS9"]
    assert got["socket AF_PACKET"] == "EAFNOSUPPORT", got
    # and the job still works with all of it on: a report from the radio reaches the center
    rig.device.inject_text(HANDSET, "SAKIT warga demam tinggi")
    rig.wait(lambda: "SAKIT warga demam tinggi" in rig.texts_at_center(), 60, "a report delivered")
    figure, verdict = _exposure(rig, "siaga.service")
    assert verdict in ("OK", "SAFE"), (figure, verdict)


def test_device_policy_refuses_a_device_that_is_not_the_radio(rig: Rig) -> None:
    """DeviceAllow needs a devices cgroup systemd can write; nspawn on a host with hybrid cgroups (v1
    controllers read-only inside) does not give it one, so here the policy is configured but not enforced."""
    assert rig.device_probe, "runs after test_hardening_holds_without_breaking_the_job"
    writable = rig.run("test", "-w", "/sys/fs/cgroup/devices/system.slice").returncode == 0
    unified = rig.run("test", "-e", "/sys/fs/cgroup/cgroup.controllers").returncode == 0
    if not writable and not unified:
        pytest.xfail(f"devices cgroup not delegated to this container: /dev/ttyS9 gave {rig.device_probe}, not EPERM")
    assert rig.device_probe == "EPERM"


def test_center_runs_under_systemd_with_the_dashboard_answering(rig: Rig) -> None:
    c = rig.container
    rig.run("systemctl", "start", "siaga-center", check=True, timeout=120)
    state = c.wait_unit("siaga-center", lambda s: s["ActiveState"] == "active", 60, "center active")
    uid = rig.run("id", "-u", "siaga", check=True).stdout.strip()
    proc = rig.run("cat", f"/proc/{state['MainPID']}/status", check=True).stdout
    assert re.search(rf"^Uid:\s+{uid}\s", proc, flags=re.M), proc
    with urllib.request.urlopen(f"http://127.0.0.1:{rig.http_port}/", timeout=10) as response:
        page = response.read().decode()
        assert response.status == 200
    print(response.url, len(page))
    assert "<html" in page.lower()
    figure, verdict = _exposure(rig, "siaga-center.service")
    assert verdict in ("OK", "SAFE"), (figure, verdict)
    rig.run("systemctl", "stop", "siaga-center", check=True, timeout=60)


def test_uninstall_keeps_config_and_data_and_purge_removes_them(rig: Rig) -> None:
    out = rig.sh("cd /root/siaga && ./install.sh --uninstall", check=True, timeout=120)
    assert "kept /etc/siaga and /var/lib/siaga" in out.stdout
    assert rig.run("systemctl", "is-active", "siaga").stdout.strip() == "inactive"
    assert rig.run("systemctl", "list-unit-files", "siaga.service", "--no-legend").stdout.strip() == ""
    for gone in ("/opt/siaga", "/etc/systemd/system/siaga.service", "/usr/local/bin/siaga"):
        assert rig.run("test", "-e", gone).returncode != 0, gone
    for kept in ("/etc/siaga/siaga.toml", DB):
        assert rig.run("test", "-f", kept).returncode == 0, kept
    rig.sh("cd /root/siaga && ./install.sh --uninstall --purge", check=True, timeout=120)
    for gone in ("/etc/siaga", "/var/lib/siaga"):
        assert rig.run("test", "-e", gone).returncode != 0, gone
