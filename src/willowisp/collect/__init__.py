"""Receivers for ``willowisp collect``: traces arriving over the network become run folders.

``native.py`` receives the native stream of every Willowisp agent (``docs/protocols.md``):
a hello, then ``.wtrace`` chunks written unchanged into one segment file per connection,
each acknowledged once it is in the file. OTLP receivers come later (issue 5).
"""
