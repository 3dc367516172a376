"""Where the other runtimes' agents are, for ``willowisp run`` and ``doctor``.

The Node agent's JavaScript ships inside this package (``_node_agent/``, the npm package
``agents/node`` of the repository); ``run`` loads it into every Node process it starts with
``NODE_OPTIONS=--require <absolute path>/register.js``. The Java agent is a jar that Maven
builds (``agents/java``); ``run`` adds ``-javaagent:<jar>`` to ``JAVA_TOOL_OPTIONS`` when it
finds one: ``WILLOWISP_JAVA_AGENT``, else the copy a wheel build put in ``_java_agent/``,
else the checkout's ``agents/java/target``. Go and Rust programs link their agent
themselves and read the ``WILLOWISP_*`` variables ``run`` sets for every child.
"""

from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def node_register() -> Path | None:
    """The Node agent's ``register.js``, None if this build has no Node agent."""
    for base in (Path(__file__).parent / "_node_agent", _HERE.parent.parent / "agents" / "node"):
        path = base / "register.js"
        if path.is_file():
            return path.resolve()
    return None


def node_options(existing: str) -> str:
    """``NODE_OPTIONS`` with the Node agent required (once), the user's options kept."""
    register = node_register()
    if register is None:
        return existing
    require = f"--require {_quote(str(register))}"
    if require in existing:
        return existing
    return f"{existing} {require}".strip()


def _quote(path: str) -> str:
    """NODE_OPTIONS splits on spaces; a path with one is double-quoted (Node reads that)."""
    return f'"{path}"' if " " in path else path


JAVA_JAR = "willowisp-agent.jar"


def java_agent_jar() -> Path | None:
    """The Java agent's jar, None if there is none here (not built)."""
    env = os.environ.get("WILLOWISP_JAVA_AGENT", "")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).parent / "_java_agent" / JAVA_JAR,
        _HERE.parent.parent / "agents" / "java" / "target" / JAVA_JAR,
    ]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    return None


def java_tool_options(existing: str) -> str:
    """``JAVA_TOOL_OPTIONS`` with the Java agent added (once), the user's options kept."""
    jar = java_agent_jar()
    if jar is None:
        return existing
    option = f"-javaagent:{_quote(str(jar))}"
    if option in existing:
        return existing
    return f"{existing} {option}".strip()
