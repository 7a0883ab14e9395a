"""Keep benchmarks/README.md's tables equal to the results they quote.

Each results file is quoted whole between ``<!-- results/NAME.md -->`` and ``<!-- end -->``;
this script rewrites those blocks from ``benchmarks/results`` (run it after a benchmark), and
``tests/python/test_benchmarks_readme.py`` fails when a block and its file differ, so a table
in the README cannot drift from the measurement it reports.

    .venv/bin/python benchmarks/readme.py
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
RESULTS = HERE / "results"
BLOCK = re.compile(r"<!-- results/([\w.\-]+\.md) -->\n(.*?)<!-- end -->", re.DOTALL)


def quoted_blocks(text: str) -> list[tuple[str, str]]:
    """(results file name, the text quoted for it) for every block of ``text``."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def refreshed(text: str) -> str:
    """``text`` with every block replaced by its results file's current content."""

    def quote(match: re.Match[str]) -> str:
        name = match.group(1)
        content = (RESULTS / name).read_text().strip("\n")
        return f"<!-- results/{name} -->\n{content}\n<!-- end -->"

    return BLOCK.sub(quote, text)


def main() -> None:
    README.write_text(refreshed(README.read_text()))
    print(f"refreshed {len(quoted_blocks(README.read_text()))} blocks of {README}")


if __name__ == "__main__":
    main()
