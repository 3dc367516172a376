"""``willowisp replay``: step through a recording in causal order (steps.py), scripted
(script.py) or in a terminal UI (tui.py), and re-simulate it with delays (whatif.py)."""
