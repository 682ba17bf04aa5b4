"""The kernel: what every part of Siaga Relay shares — errors, the report model, config, clocks, airtime,
systemd notify, metrics.  It imports nothing of ours (./check enforces it: docs/ARCHITECTURE.md)."""
