"""The developer's commands: ``siaga simulate`` (devkit/sim/), ``siaga rehearse`` (devkit/rehearse/)
and ``siaga demo`` (a rehearsal of the bundled TTU topology)."""

from __future__ import annotations

from typing import Any


def _simulate(args: Any) -> int:
    from cli.base import setup_logging
    from devkit.sim import main_simulate

    setup_logging(args.log_level)  # no config file: the simulator is not a post
    return main_simulate(args)


def add_simulate(sub: Any) -> None:
    """``siaga simulate`` (devkit/sim/): a simulated Meshtastic device on TCP and/or a pty."""
    p = sub.add_parser("simulate", help="run a simulated Meshtastic device (TCP and/or pty), play a scenario")
    p.add_argument("--listen", metavar="HOST:PORT", help="serve the TCP stream API (firmware uses port 4403)")
    p.add_argument("--pty", metavar="PATH", help="create a pseudo-terminal and make PATH a symlink to it")
    p.add_argument("--scenario", metavar="FILE", help="JSON-lines scenario to play (docs/SIMULATOR.md)")
    p.add_argument("--speed", type=float, default=1.0, help="time compression factor (default 1)")
    p.add_argument("--record", metavar="FILE", help="append every packet the client sends as JSON lines")
    p.add_argument("--state", metavar="FILE", help="keep the device config in this JSON file")
    p.add_argument("--node", default="!5a6a0001", help="this device's node id (default !5a6a0001)")
    p.add_argument("--long-name", default="Pos Siaga (simulasi)", help="this device's long name")
    p.add_argument("--short-name", default="SIM1", help="this device's short name (max 4 characters)")
    p.add_argument("--clock", action="store_true", help="the device has a clock: packets carry rx_time")
    p.add_argument("--offline-queue", type=int, default=30, help="packets kept while no client (default 30)")
    p.add_argument("--seed", type=int, help="random seed (packet ids, channel key, garbage)")
    p.add_argument("--wait-client", action="store_true", help="start the scenario at the first handshake")
    p.add_argument("--exit-after-scenario", action="store_true", help="exit once the scenario has played")
    p.add_argument("--linger", type=float, default=1.0, help="stay up after the scenario (default 1 s)")
    p.add_argument("--no-config-reboot", action="store_true", help="no reboot after config changes")
    p.add_argument("--log-level", default="INFO", help="DEBUG shows every packet (default INFO)")
    p.set_defaults(func=_simulate)


def _demo(args: Any) -> int:
    from cli.base import setup_logging
    from devkit.demo import run_demo

    setup_logging("WARNING")
    return run_demo(
        duration=args.duration,
        as_json=args.json,
        speed=args.speed,
        workdir=args.dir,
        keep=args.keep,
    )


def add_demo(sub: Any) -> None:
    """``siaga demo`` (devkit/demo.py): a rehearsal of the bundled TTU topology, the dashboard kept up."""
    from pathlib import Path

    p = sub.add_parser("demo", help="run the whole system on this machine with a realistic TTU scenario")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout (progress on stderr)")
    p.add_argument("--speed", type=float, default=1.0, help="compress the scenario's time by this factor")
    p.add_argument("--dir", type=Path, metavar="DIR", help="working directory (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp working directory (logs, databases)")
    p.set_defaults(func=_demo)


def _rehearse(args: Any) -> int:
    from cli.base import setup_logging
    from devkit.rehearse.topology import load, resolve

    setup_logging("WARNING")
    topology = load(resolve(args.topology))  # a bad file: ConfigError, exit 78, before anything starts
    from devkit.rehearse.rehearsal import run_rehearsal

    return run_rehearsal(
        topology,
        duration=args.duration,
        as_json=args.json,
        speed=args.speed,
        workdir=args.dir,
        keep=args.keep,
    )


def add_rehearse(sub: Any) -> None:
    """``siaga rehearse`` (devkit/rehearse/): a topology's posts, relays and mesh rehearsed on this machine."""
    from pathlib import Path

    p = sub.add_parser(
        "rehearse",
        help="rehearse a mesh topology on this machine: broker, center, one daemon per post/relay, simulated mesh",
    )
    p.add_argument(
        "topology", metavar="TOPOLOGY.toml", help="a topology file, or a bundled one by name (ttu, chain3, diamond)"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--speed", type=float, default=1.0, help="compress the topology's time by this factor")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout (progress on stderr)")
    p.add_argument("--dir", type=Path, metavar="DIR", help="working directory (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp working directory (logs, databases)")
    p.set_defaults(func=_rehearse)
