"""``python -m plasticity_bench.analysis.pages PAGE ...`` (``make pages``): put the tables that
``make figures`` (and ``make bench``: ``results/bench/*.md``) generated into the result pages and
docs/speed.md. A page marks each one with

    <!-- generated: results/<experiment>/figures/tables/<table>.md -->
    ...the table, replaced on every call...
    <!-- end generated -->

so no number in a page is typed by hand (tests/test_docs.py checks every page against its files)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

BLOCK = re.compile(r"(<!-- generated: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def blocks(page: str) -> list[tuple[str, str]]:
    """(the generated file's path, the text the page holds for it) for every marked block."""
    return [(m["path"], m["body"]) for m in BLOCK.finditer(page)]


def filled(page: str, root: Path) -> str:
    """The page with every block holding its file's current text."""
    return BLOCK.sub(lambda m: m[1] + (root / m["path"]).read_text() + m[4], page)


def main(argv: list[str]) -> int:
    root = Path.cwd()
    for name in argv:
        page = Path(name)
        try:
            text = page.read_text()
            new = filled(text, root)
        except OSError as error:
            print(
                f"error: {error.filename}: {error.strerror}; run make figures for that experiment first",
                file=sys.stderr,
            )
            return 2
        if new != text:
            page.write_text(new)
        print(f"{page}: {len(blocks(new))} generated tables{' (updated)' if new != text else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
