"""``--format json``: the analysis document as one JSON object, ``schema`` first."""

from __future__ import annotations

import json
from typing import Any


def render_json(document: dict[str, Any]) -> str:
    """The document as indented JSON text with a final newline; keys keep their order."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
