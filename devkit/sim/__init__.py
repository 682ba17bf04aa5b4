"""The simulated Meshtastic device (``siaga simulate``) and the simulated mesh of several (docs/SIMULATOR.md).

The public names are re-exported here: ``from devkit.sim import SimulatedDevice, load_scenario``.
"""

from devkit.sim.command import main_simulate, parse_listen
from devkit.sim.device import SimulatedDevice
from devkit.sim.links import garbage_bytes
from devkit.sim.loop import EventLoop
from devkit.sim.mesh import Mesh, RadioLink, RadioStats
from devkit.sim.rf import Hop
from devkit.sim.scenario import ScenarioStep, load_scenario, parse_step
from devkit.sim.state import BROADCAST_NUM, DeviceState, SentPacket, node_id, parse_node_num

__all__ = [
    "BROADCAST_NUM",
    "DeviceState",
    "EventLoop",
    "Hop",
    "Mesh",
    "RadioLink",
    "RadioStats",
    "ScenarioStep",
    "SentPacket",
    "SimulatedDevice",
    "garbage_bytes",
    "load_scenario",
    "main_simulate",
    "node_id",
    "parse_listen",
    "parse_node_num",
    "parse_step",
]
