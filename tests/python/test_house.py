"""House rules that keep the project readable: one owner per default and for the version, and a
README layout that matches the package."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import factvae
from factvae.cli import FitOptions
from factvae.model.network import Architecture
from factvae.model.terms import LossWeights
from factvae.settings import MODEL_DEFAULTS, RUN_DEFAULTS, defaults
from factvae.train.trainer import OptimiserSettings

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "python" / "factvae"


def module_summary(path: Path) -> str:
    """A module's first docstring paragraph: what the README's layout table says of it."""
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return " ".join(docstring.split("\n\n")[0].split()).replace("``", "`")


def layout_table() -> str:
    """The README's table of Python modules, generated from the package itself."""
    rows = ["| module | what it is for |", "|---|---|"]
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "__init__.py":
            rows.append(f"| `{path.relative_to(REPO)}` | {module_summary(path)} |")
    return "\n".join(rows)


def test_readme_layout_lists_every_module_as_the_package_describes_it():
    readme = (REPO / "README.md").read_text()
    expected = layout_table()
    assert expected in readme, (
        "README.md's module table is out of date; replace it with:\n\n" + expected
    )


def test_readme_layout_paths_exist():
    section = (REPO / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    for path in re.findall(r"^\| `([^`]+)`", section, flags=re.M):
        assert (REPO / path.rstrip("/")).exists(), f"README layout names a missing {path}"


def test_the_version_is_written_once():
    description = (REPO / "DESCRIPTION").read_text()
    r_version = re.search(r"^Version:\s*(\S+)", description, flags=re.M).group(1)
    assert r_version == factvae.__version__, "DESCRIPTION and python/factvae/__init__.py differ"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and '\nversion = "' not in pyproject
    news = (REPO / "inst" / "NEWS.md").read_text()
    assert news.startswith(f"# factvae {factvae.__version__}"), "inst/NEWS.md has no entry"


def test_defaults_live_only_in_settings():
    for built_from_settings in (Architecture, LossWeights, OptimiserSettings):
        with_default = [
            f.name
            for f in dataclasses.fields(built_from_settings)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        ]
        assert not with_default, f"{built_from_settings.__name__} has defaults {with_default}"
    options = FitOptions(out=Path("."))
    assert (options.latent, options.hvg) == (MODEL_DEFAULTS.n_latent, MODEL_DEFAULTS.n_hvg)
    assert options.atac_weight == MODEL_DEFAULTS.atac_recon_weight
    assert (options.batch_size, options.seed) == (RUN_DEFAULTS.batch_size, RUN_DEFAULTS.seed)
    assert options.links_window == RUN_DEFAULTS.link_window
    assert defaults("paper")["max_epochs"] == 300 and defaults()["max_epochs"] is None
