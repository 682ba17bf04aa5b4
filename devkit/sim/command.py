"""``siaga simulate``: run one simulated device until SIGTERM/SIGINT (the options: docs/SIMULATOR.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from devkit.sim.device import SimulatedDevice
from devkit.sim.scenario import load_scenario
from siaga.hostport import parse_host_port

log = logging.getLogger(__name__)


def parse_listen(value: str) -> tuple[str, int]:
    return parse_host_port(value, "simulate.listen", default_host="0.0.0.0", port_zero=True)


def main_simulate(args: argparse.Namespace) -> int:
    """Run the simulated device until SIGTERM/SIGINT (or the scenario ends with --exit-after-scenario)."""
    steps = load_scenario(args.scenario) if args.scenario else []
    device = SimulatedDevice(
        listen=parse_listen(args.listen) if args.listen else None,
        pty_path=args.pty,
        node=args.node,
        long_name=args.long_name,
        short_name=args.short_name,
        speed=args.speed,
        record_path=args.record,
        state_path=args.state,
        has_clock=args.clock,
        offline_queue=args.offline_queue,
        reboot_on_config=not args.no_config_reboot,
        seed=args.seed,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        device.start()
        if device.port:
            # Tests and scripts started with port 0 read the real port from this line.
            print(f"listening on {parse_listen(args.listen)[0]}:{device.port}", flush=True)
        if device.pty_path:
            print(f"pty {device.pty_path}", flush=True)
        if steps:
            if args.wait_client:
                while not stop.is_set() and device.handshakes == 0:
                    stop.wait(0.1)
            device.play(steps)
        while not stop.is_set():
            if args.exit_after_scenario and (not steps or device.scenario_done.is_set()):
                stop.wait(args.linger)
                break
            stop.wait(0.2)
    finally:
        device.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("simulator stopped: %s", dict(device.stats))
    return 0
