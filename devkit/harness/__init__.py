"""Processes the tests and the benchmarks both start: Mosquitto on a free port, PostgreSQL schemas, a
center (in-process or as a process), a post's uplink, ``siaga run`` subprocesses.  No pytest here: the
fixtures built on these live in tests/conftest.py."""
