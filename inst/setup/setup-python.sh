#!/usr/bin/env bash
# Creates (or refreshes) the Python environment of factvae: a venv with the pinned CPU torch
# wheel installed first, so no dependency can pull a multi-GB CUDA build, then factvae itself.
# Usage: setup-python.sh SOURCE_DIR [VENV_DIR]. Idempotent: reinstalls only when pyproject changes.
set -euo pipefail
src=$(cd "${1:?usage: setup-python.sh SOURCE_DIR [VENV_DIR]}" && pwd)
venv=${2:-$src/.venv}
python=${FACTVAE_BASE_PYTHON:-python3}
torch_pin=${FACTVAE_TORCH:-torch==2.13.0}
stamp="$venv/.factvae-stamp"
want="$(sha256sum "$src/pyproject.toml" | cut -c1-16) $torch_pin"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup-python: $venv is up to date"
  exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" "$torch_pin"
"${pip[@]}" -e "$src[test]"
echo "$want" > "$stamp"
echo "setup-python: ready at $venv ($("$venv/bin/python" -c 'import factvae; print("factvae", factvae.__version__)'))"
