# Sourced by the scripts here: sets PYTHON to the project's Python and checks it.
#
# Which Python: $PYTHON when set; else .venv/bin/python of this checkout (the
# README's Quick start creates it); else python3 (or python) on PATH. It must be
# able to import the project's dependencies (absl-py, TensorFlow); if it cannot,
# the script stops with one line saying what to do.
_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$_repo/.venv/bin/python" ]]; then
    PYTHON="$_repo/.venv/bin/python"
  else
    PYTHON="$(command -v python3 || command -v python || true)"
  fi
fi
if [[ -z "$PYTHON" ]] || ! "$PYTHON" -c 'import importlib.util as u, sys
sys.exit(0 if all(u.find_spec(m) for m in ("absl", "tensorflow")) else 1)' 2>/dev/null; then
  echo "error: ${PYTHON:-no python} cannot import absl and tensorflow: create the project's environment (python3 -m venv .venv && .venv/bin/pip install -e . in $_repo) or set PYTHON=<that environment's python>" >&2
  exit 1
fi
# The package of this checkout, also when it is not installed in that environment.
export PYTHONPATH="$_repo${PYTHONPATH:+:$PYTHONPATH}"
unset _repo
