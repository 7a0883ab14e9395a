"""benchmarks/README.md quotes its tables from benchmarks/results, so they cannot drift from the
measurements: every quoted block equals its file, every results file is quoted, and a table
outside the blocks says where it came from (``<!-- scratch: ... -->`` right above it)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from readme import BLOCK, README, RESULTS, quoted_blocks  # noqa: E402


def test_every_quoted_block_equals_its_results_file():
    blocks = quoted_blocks(README.read_text())
    assert blocks, "benchmarks/README.md quotes no results file"
    for name, text in blocks:
        assert (RESULTS / name).exists(), f"benchmarks/README.md quotes a missing {name}"
        assert text.strip("\n") == (RESULTS / name).read_text().strip("\n"), (
            f"the block quoting {name} differs from the file: run "
            ".venv/bin/python benchmarks/readme.py"
        )


def test_every_results_file_is_quoted():
    quoted = {name for name, _ in quoted_blocks(README.read_text())}
    written = {path.name for path in RESULTS.glob("*.md")}
    assert written <= quoted, f"not quoted in benchmarks/README.md: {sorted(written - quoted)}"


def test_tables_outside_the_blocks_say_where_they_come_from():
    outside = BLOCK.sub("", README.read_text()).split("\n")
    previous = ""
    for number, line in enumerate(outside):
        starts_table = line.lstrip().startswith("|") and not previous.lstrip().startswith("|")
        if starts_table:
            above = next((x for x in reversed(outside[:number]) if x.strip()), "")
            assert above.startswith("<!-- scratch:"), f"unsourced table: {line[:80]}"
        previous = line


def test_the_block_pattern_needs_a_name_and_an_end():
    assert BLOCK.fullmatch("<!-- results/a_b-1.0.md -->\n| x |\n<!-- end -->")
    assert not re.search(BLOCK, "<!-- results/a.md -->\n| x |\n")


def test_the_guide_names_paragraphs_and_sections_that_exist():
    text = README.read_text()
    guide = text.split("\n## Where the current answers are\n", 1)[1].split("\n## ", 1)[0]
    guide = " ".join(guide.split())
    paragraphs = {part.split("**")[1] for part in text.split("\n\n") if part.startswith("**")}
    headings = [line.lstrip("#").strip() for line in text.split("\n") if line.startswith("##")]
    named = re.findall(r"\*\*(.+?)\*\*", guide)
    sections = re.findall(r'"(.+?)"', guide)
    assert named and sections, "the guide names no paragraph or section"
    for name in named:
        assert name in paragraphs, f"the guide names a paragraph that is not there: {name}"
    for name in sections:
        assert any(h.startswith(name) for h in headings), f"no section is named {name}"
