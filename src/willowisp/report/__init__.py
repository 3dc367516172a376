"""Renderings of an analysis document: JSON (the contract) and text (for people)."""

from willowisp.report.json_report import render_json
from willowisp.report.text_report import render_text

__all__ = ["render_json", "render_text"]
