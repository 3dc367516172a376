"""Names that survive a re-run: what diff matches two runs by."""

from __future__ import annotations

from willowisp.analysis.naming import command_key


def test_command_key_keeps_programs_and_folds_what_changes_per_run() -> None:
    """Paths by their base name, numbers (ports) folded; a path the recorder cut short
    (it ends in '/') by its last folder, not the whole path with its home directory."""
    assert command_key("/root/.cache/demo/go/inventory 36305 39343") == "inventory N N"
    assert command_key("/usr/bin/node /tmp/x/pricing.js 8080") == "node pricing.js N"
    assert command_key("env FAKETIME=-1.5 /root/.cache/willowisp/") == "env FAKETIME=-N.N willowisp"
    assert command_key("sh -c 'a / b'") == "sh -c 'a / b'"
