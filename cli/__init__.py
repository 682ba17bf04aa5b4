"""The ``siaga`` command line, on top of everything: nothing imports it (./check enforces it)."""
