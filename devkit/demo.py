"""``siaga demo``: the whole system on one machine — a rehearsal of the bundled TTU topology.

``devkit/topologies/ttu.toml`` is Kabupaten Timor Tengah Utara in small: posts Oebubun and Eban with an
uplink (Eban's clock six years wrong), post Noemuti without one, whose reports a hilltop relay on Bukit
Mutis carries to them; officers' handsets with canned and free-text reports and SOS presses, a packet
heard by two posts, an unregistered radio; a radio link that fades, the relay Pi losing power, Oebubun's
uplink cut.  ``siaga rehearse`` (devkit/rehearse/) runs it: broker, center with dashboard, one daemon and
one simulated radio per post and relay.  Unlike a plain rehearsal, the demo keeps the dashboard up after
everything has arrived, until Ctrl-C (or ``--duration``).
"""

from __future__ import annotations

from pathlib import Path

from devkit.rehearse.rehearsal import run_rehearsal
from devkit.rehearse.topology import BUNDLED, load

TOPOLOGY = BUNDLED / "ttu.toml"


def run_demo(*, duration: float | None, as_json: bool, speed: float, workdir: Path | None, keep: bool) -> int:
    return run_rehearsal(
        load(TOPOLOGY),
        duration=duration,
        as_json=as_json,
        speed=speed,
        workdir=workdir,
        keep=keep,
        linger=True,
        title="Ringkasan demo Siaga Relay (Timor Tengah Utara)",
    )
