"""Post-to-post store-and-forward over the mesh (custody transfer toward an uplink).

Built so far: the compact codec (relay/codec.py, relay/dictionary.py; docs/RELAY.md) that puts one report
in one LoRa packet with its origin post's integrity tag.  Custody, routing and the relay role come next
(issue 12); until then a post without an uplink keeps every report in its own durable queue (edge/store.py).
"""
