"""``willowisp replay``: step through a recording in causal order (steps.py), scripted
(script.py) or in a terminal UI (tui.py), and re-simulate it with delays (targets.py names
them, whatif.py simulates, whatif_report.py renders the outcome)."""
