"""``siaga rehearse``: a regency's mesh rehearsed on one machine (topology.py reads the file, rehearsal.py
runs it, summary.py counts what happened)."""
