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
# Embedded in R, reticulate reports the venv as sys.base_prefix, so torch.compile looks for
# Python.h under the venv: link the base interpreter's headers there.
link_headers() {
  "$venv/bin/python" - <<'PY'
import os, sys, sysconfig
source = sysconfig.get_path("include")
target = os.path.join(sys.prefix, "include", os.path.basename(source))
if source != target and os.path.exists(os.path.join(source, "Python.h")):
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(source):
        if not os.path.lexists(os.path.join(target, name)):
            os.symlink(os.path.join(source, name), os.path.join(target, name))
PY
}
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  link_headers
  echo "setup-python: $venv is up to date"
  exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
link_headers
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" "$torch_pin"
"${pip[@]}" -e "$src[test]"
echo "$want" > "$stamp"
echo "setup-python: ready at $venv ($("$venv/bin/python" -c 'import factvae; print("factvae", factvae.__version__)'))"
