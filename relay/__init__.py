"""Post-to-post store-and-forward over the mesh (custody transfer toward an uplink; docs/RELAY.md).

The compact packet encoding lives in sync/compact.py (the center verifies carried reports with it, and the
center may not import this package).  Custody, routing and the relay role are being built (issue 12); until
then a post without an uplink keeps every report in its own durable queue (edge/store.py).
"""
