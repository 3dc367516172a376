"""The bundled Python-only demo: two real services over HTTP, a real cross-process deadlock,
and a second "host" whose wall clock is off (see runner.py). Replaced by the polyglot demo
once the other runtimes' agents land."""
