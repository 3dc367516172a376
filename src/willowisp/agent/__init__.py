"""The Python agent: loaded into the observed program (``willowisp run`` or
``willowisp.start()``), it records threads, tasks, locks, queues and HTTP hops into
``.wtrace`` segments. Standard library only; see rows.py for the hot path, recorder.py
for the flusher and standing.py for what api.arm() keeps between recordings."""
