"""The README stays a first screen and the docs site stays whole: every relative link resolves and every page
is in mkdocs.yml's nav. Building the site itself (`make docs`: mkdocs build --strict) is for CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 250

# [text](target) and ![alt](target), with an optional "title"; the target without its #anchor.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def relative_links(md: Path) -> list[str]:
    text = CODE.sub("", FENCE.sub("", md.read_text(encoding="utf-8")))
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I) and not t.startswith("#")]


def nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in nav_pages(value)]
    return []


def test_the_readme_is_a_first_screen():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference material into docs/"


@pytest.mark.parametrize("md", [ROOT / "README.md", *pages()], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file(md):
    missing = [t for t in relative_links(md) if not (md.parent / t.split("#", 1)[0]).exists()]
    assert not missing, f"{md.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config.get("docs_dir", "docs") == "docs"
    nav = nav_pages(config["nav"])
    in_docs = {p.relative_to(DOCS).as_posix() for p in pages()}
    assert in_docs - set(nav) == set(), "pages missing from mkdocs.yml's nav"
    assert set(nav) - in_docs == set(), "nav entries without a page"


def test_the_link_finder_sees_links_and_skips_code(tmp_path):
    md = tmp_path / "page.md"
    md.write_text('See [a](a.md#x), ![fig](figures/f.png "F") and [web](https://example.org).\n'
                  "`[not](code.md)`\n```\n[nor](fenced.md)\n```\n[top](#here)\n")
    assert relative_links(md) == ["a.md#x", "figures/f.png"]
