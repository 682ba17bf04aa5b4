"""Siaga Relay benchmarks: `.venv/bin/python -m bench` runs them all (bench/run_all.py)."""
