"""``willowisp view``: the web viewer (server.py) over columns built once per run (model.py),
answered at the screen's level of detail (lod.py)."""
