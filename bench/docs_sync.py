"""Copy the benchmark tables of bench/results.md into the docs that include them.

bench/results.md (written by `make bench`) holds one table per benchmark step
between ``<!-- bench:STEP -->`` and ``<!-- /bench:STEP -->``. A page that shows a
step's figures holds the same markers; this script replaces what is between
them with the table of results.md, so figures are never typed by hand.
`make bench` runs it after the suite; tests/test_docs.py fails when a page and
results.md disagree.

    python bench/docs_sync.py           # rewrite the pages
    python bench/docs_sync.py --check   # only report pages that disagree (exit 1)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.docblocks import find_blocks, names_marked, replace_block

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.md"


def pages(root: Path = ROOT) -> list[Path]:
    """The Markdown pages that may include benchmark tables: README.md and docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def disagreements(page: str, results: str) -> list[str]:
    """What is wrong with the bench blocks of ``page`` against ``results``, one line each."""
    wanted = find_blocks(results, "bench")
    present = find_blocks(page, "bench")
    problems = []
    marked = names_marked(page, "bench")
    for name in sorted({n for n in marked if marked.count(n) > 1}):
        problems.append(f"bench:{name} is included twice")
    for name in marked:
        if name not in present:
            problems.append(f"bench:{name} has no end marker")
        elif name not in wanted:
            problems.append(f"bench:{name} is not a table of bench/results.md")
        elif present[name] != wanted[name]:
            problems.append(f"bench:{name} differs from bench/results.md")
    return problems


def sync(page: str, results: str) -> str:
    """``page`` with every bench block replaced by the table of the same name in ``results``."""
    wanted = find_blocks(results, "bench")
    for name in find_blocks(page, "bench"):
        if name in wanted:
            page = replace_block(page, "bench", name, wanted[name])
    return page


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="report disagreements, change nothing")
    args = parser.parse_args()
    results = RESULTS.read_text()
    failed = False
    for path in pages():
        text = path.read_text()
        if args.check:
            for problem in disagreements(text, results):
                print(f"{path.relative_to(ROOT)}: {problem}")
                failed = True
            continue
        new = sync(text, results)
        if new != text:
            path.write_text(new)
            print(f"updated {path.relative_to(ROOT)}")
        for problem in disagreements(new, results):
            print(f"{path.relative_to(ROOT)}: {problem}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
