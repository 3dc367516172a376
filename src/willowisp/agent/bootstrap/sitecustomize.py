"""Loaded by every Python process started under ``willowisp run`` (PYTHONPATH points here).

Starts the agent from the WILLOWISP_* environment, then runs the sitecustomize this one
shadows, if any, so the program's own site customisation still happens. A failure to start
is one line on stderr; the program always runs.
"""

import os
import sys

if os.environ.get("WILLOWISP_OUT") and os.environ.get("WILLOWISP_DISABLED", "") in ("", "0"):
    try:
        from willowisp.agent.api import start_from_env

        start_from_env()
    except Exception as _exc:
        sys.stderr.write(f"willowisp: agent not started in pid {os.getpid()}: {_exc}\n")


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == here:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            with open(candidate, "rb") as f:
                code = compile(f.read(), candidate, "exec")
            exec(code, {"__name__": "sitecustomize", "__file__": candidate})  # noqa: S102
            return


_chain()
