"""The test tree's shared setup: being here puts ``tests/`` on ``sys.path`` (pytest's
prepend import mode), so every test module can ``import wispkit`` (tests/wispkit.py)."""
