"""The docs agree with what generates their figures and tables, and their links lead somewhere.

- every ``<!-- bench:NAME -->`` table in README.md and docs/ equals the table of
  that name in bench/results.md (the one source of benchmark figures);
- the settings table of docs/configuration.md is the one the settings model gives;
- every relative link points to an existing file (and heading, for ``#anchors``
  into Markdown pages);
- every ``make TARGET`` the docs name is a target of the Makefile.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import docs_sync
from pipeline import settings_doc
from pipeline.docblocks import find_blocks

ROOT = Path(__file__).resolve().parent.parent
PAGES = docs_sync.pages(ROOT)

#: Pages that other work adds to docs/ and that arrive by merge; links to them are allowed
#: until then. Remove a name once its file exists.
ARRIVING: set[str] = set()

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_MAKE = r"(?:`|^[ \t]*)make ([a-z][a-z0-9-]*)\b"
_FENCE = re.compile(r"```.*?```", re.DOTALL)
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _links(text: str) -> list[str]:
    """The targets of the Markdown links of ``text``, code spans and blocks left out."""
    return _LINK.findall(_CODE.sub("", text))


def _anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page."""
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", text), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_pages_found() -> None:
    names = {_rel(p) for p in PAGES}
    assert {"README.md", "docs/configuration.md", "docs/performance.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_bench_tables_equal_results(page: Path) -> None:
    results = docs_sync.RESULTS.read_text()
    assert docs_sync.disagreements(page.read_text(), results) == [], (
        "run `python bench/docs_sync.py` to copy the tables of bench/results.md"
    )


def test_results_have_a_table_per_step() -> None:
    from bench import suite

    tables = find_blocks(docs_sync.RESULTS.read_text(), "bench")
    assert set(tables) == {step.name for step in suite.steps()}


def test_docs_include_bench_tables() -> None:
    included = {name for page in PAGES for name in find_blocks(page.read_text(), "bench")}
    assert {"enrich", "rollups", "scale", "intake"} <= included


def test_settings_table_matches_model() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert settings_doc.disagrees(page) is None


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_exist(page: Path) -> None:
    broken = []
    for target in _links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        name = _rel(dest) if dest.is_relative_to(ROOT) else str(dest)
        if name in ARRIVING:
            continue
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
            broken.append(f"{target}: no such heading")
    assert broken == []


def test_make_targets_named_in_docs_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.MULTILINE))
    named = {
        (_rel(page), target)
        for page in PAGES
        # `make x` in code spans, and make commands starting a line of a code block
        for target in re.findall(_MAKE, page.read_text(), re.MULTILINE)
    }
    assert named, "no make targets found in the docs"
    assert sorted((page, t) for page, t in named if t not in targets) == []


def test_readme_is_a_front_page() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "make run" in text and "make test" in text
    # The prerequisites come before the first command a reader is asked to run.
    assert text.index("Java 17") < text.index("make run")


def test_code_cites_existing_docs() -> None:
    # Code comments point to docs pages and decision records instead of quoting figures.
    cited = {
        (_rel(path), ref)
        for folder in ("pipeline", "bench", "scripts")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".sh")
        for ref in re.findall(r"\bdocs/[\w./-]+\.md\b", path.read_text())
    }
    assert cited, "no docs cited from the code"
    assert sorted((src, ref) for src, ref in cited if not (ROOT / ref).exists() and ref not in ARRIVING) == []
