"""The README is a front door: short, the two commands on top, every link alive, every
top-level entry of the tree named in its Layout; details live in docs/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_LINES = 200
TOP_LINES = 40
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(page: Path) -> list[str]:
    """The page's links to files of the checkout (code blocks, web and mail links left out)."""
    text = FENCE.sub("", page.read_text())
    found = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue
        found.append(target.split("#", 1)[0])
    return found


def layout_section(text: str) -> str:
    match = re.search(r"^## Layout\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Layout' section"
    return match.group(1)


def tracked_top_level() -> set[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split("\n")
    return {line.split("/", 1)[0] for line in listed if line}


def test_readme_is_short() -> None:
    lines = README.read_text().split("\n")
    count = len(lines) - (lines[-1] == "")
    assert count <= MAX_LINES, f"README.md has {count} lines (at most {MAX_LINES}): move details " \
                               "to docs/"


def test_the_two_commands_come_first() -> None:
    top = README.read_text().split("\n")[:TOP_LINES]
    for command in ("make run", "make test"):
        assert any(re.match(rf"^{command}\s+#", line) for line in top), \
            f"`{command}   # ...` not in README.md's first {TOP_LINES} lines"


def test_the_docs_pages_exist() -> None:
    assert (ROOT / "docs").is_dir() and list((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files(page: Path) -> None:
    links = relative_links(page)
    missing = [link for link in links if link and not (page.parent / link).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_layout_names_every_top_level_entry() -> None:
    layout = layout_section(README.read_text())
    missing = [name for name in sorted(tracked_top_level())
               if not re.search(rf"`{re.escape(name)}(/[^`]*)?`", layout)]
    assert not missing, f"README.md's Layout does not name: {missing}"


def test_the_link_check_sees_links() -> None:
    """The checks above would pass vacuously on a page whose links the pattern misses."""
    assert {"docs/deploy.md", "benchmarks/README.md"} <= set(relative_links(README))
