"""Post-to-post store-and-forward over the mesh (custody transfer toward an uplink).

Not built yet: no issue has asked for it.  Today a post without an uplink keeps every report in its own
durable queue (edge/store.py) until any uplink appears.  This package is where the compact mesh codec and
custody transfer will live (docs/ARCHITECTURE.md, "relay/").
"""
