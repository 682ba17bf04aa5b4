"""Post-to-post store-and-forward over the mesh: custody transfer toward an uplink (docs/RELAY.md).

* :mod:`relay.routing` — the neighbour table from beacons, the metric, the strictly-better next hop;
* :mod:`relay.budget` — our own share of channel time in a sliding hour (siaga/airtime.py's formula);
* :mod:`relay.engine` — the custody engine: its own thread, a deadline heap, CACK batching, retries,
  beacons; it talks to a :class:`relay.engine.RadioPort` and a :class:`relay.engine.CustodyStore`.

The packet encoding lives in sync/compact.py (the center verifies carried reports with it and may not import
this package).  Nothing here imports meshtastic or edge: the post (edge/daemon.py) hands the engine its
radio (edge/radio.py) and store (edge/store.py).
"""
