"""The README's quick starts, run as they stand: the blocks are read from README.md (each follows
a ``<!-- quickstart:LANGUAGE -->`` marker), so the README cannot drift from what works. Python runs
in a fresh interpreter, R with ``Rscript`` after the package is installed the way ``make install``
installs it; both from an empty temporary folder, not the checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- quickstart:(\w+) -->\n```(\w+)\n(.*?)\n```", re.DOTALL)


def quick_start(language: str) -> str:
    """The code of the README block marked ``<!-- quickstart:LANGUAGE -->``."""
    blocks = [m for m in MARKER.finditer(README.read_text()) if m.group(1) == language]
    assert len(blocks) == 1, f"README.md needs one block marked <!-- quickstart:{language} -->"
    assert blocks[0].group(2) == language, "the marker must sit right above its fenced block"
    return blocks[0].group(3) + "\n"


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a new user's shell: no Python chosen for R, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("RETICULATE_PYTHON", "PYTHONPATH")}
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # as the README advises when the cores are shared
    env.update(extra)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{output[-6000:]}"
    return output


def test_quick_starts_are_marked_and_parse():
    compile(quick_start("python"), "README.md (Python quick start)", "exec")
    r = quick_start("r")
    assert r.startswith("library(factvae)"), "the R quick start begins with library(factvae)"
    if shutil.which("Rscript"):
        done = subprocess.run(
            ["Rscript", "-e", "invisible(parse(file('stdin')))"],
            input=r, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, f"the R quick start does not parse: {done.stderr}"


@pytest.mark.slow
def test_python_quick_start_runs(tmp_path):
    (tmp_path / "quickstart.py").write_text(quick_start("python"))
    checks = (
        "import numpy as np\n"
        "assert z.shape == (300, 50) and np.isfinite(z).all()\n"
        "assert len(links) > 0 and (same.get_latent('joint') == z).all()\n"
        "print('quick start checked')\n"
    )
    (tmp_path / "checks.py").write_text(quick_start("python") + checks)
    output = run([sys.executable, "checks.py"], tmp_path, child_env(), 600)
    assert "quick start checked" in output
    assert "DeprecationWarning" not in output
    assert (tmp_path / "my_model").exists()
    # Progress a person can follow in a log: plain lines, one per tenth of the epochs.
    assert re.search(r"epoch [0-9]+/10: rna [0-9.]+", output), output


@pytest.mark.slow
def test_r_quick_start_runs_after_make_install(tmp_path):
    if shutil.which("Rscript") is None:
        pytest.skip("R is not installed (make setup installs it)")
    library, config, work = tmp_path / "lib", tmp_path / "config", tmp_path / "work"
    work.mkdir()
    # What `make install` runs, into a library and a configuration folder of the test's own.
    env = child_env(R_USER_CONFIG_DIR=str(config), R_LIBS_USER=str(library))
    venv = Path(sys.prefix)
    installed = run(
        ["bash", str(ROOT / "inst/setup/install-r.sh"), str(ROOT), str(venv), str(library)],
        tmp_path, env, 600,
    )  # fmt: skip
    assert "it uses Python" in installed
    recorded = (config / "R" / "factvae" / "python").read_text().strip()
    assert os.path.samefile(recorded, venv / "bin" / "python")
    (work / "quickstart.R").write_text(quick_start("r"))
    output = run(["Rscript", "quickstart.R"], work, env, 600)
    assert "GRanges object with 6 ranges" in output, output[-3000:]
    assert "DeprecationWarning" not in output
    # RunFactVAE shows its progress in R: the plain lines of the Python training loop.
    assert re.search(r"epoch [0-9]+/10: rna [0-9.]+", output), output[-3000:]
