# Sourced by scripts/demo and scripts/test: make ./.venv with Willowisp installed.
# Reinstalls only when pyproject.toml changed (its hash is kept in .venv/.wisp-installed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

pick_python() {
  for p in python3.11 python3.12 python3.13 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$p"; return 0
    fi
  done
  echo "willowisp needs CPython 3.11 or newer on PATH" >&2
  return 1
}

ensure_venv() {  # $1: extras ("" or "dev"); a dev install also serves "".
  local extras="${1:-}" target="$ROOT" hash have stamp="$VENV/.wisp-installed"
  hash="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  [ -x "$VENV/bin/python" ] || "$(pick_python)" -m venv "$VENV"
  if [ -f "$stamp" ]; then
    have="$(cat "$stamp")"
    if [ "$have" = "$hash-dev,libs" ] || [ "$have" = "$hash-${extras:-none}" ]; then return 0; fi
  fi
  [ "$extras" = "dev" ] && extras="dev,libs"  # the test suite also needs the hooked libraries
  [ -n "$extras" ] && target="$ROOT[$extras]"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target"
  echo "$hash-${extras:-none}" > "$stamp"
}
