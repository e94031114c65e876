"""The documentation site builds offline with warnings as errors, and it is whole:
every page of the nav, every command of the command line, the findings with their
figures, nothing fetched from the network."""

from __future__ import annotations

import html as html_text
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def nav_pages(nav) -> list[str]:
    """Every Markdown source the nav names, however deeply nested."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for v in nav.values() for p in nav_pages(v)]
    return [p for item in nav for p in nav_pages(item)]


def built(site: Path, page: str) -> Path:
    """The HTML file mkdocs writes for the source ``page`` (directory URLs)."""
    stem = page[: -len(".md")]
    if stem == "index" or stem.endswith("/index"):
        return site / stem[: -len("index")] / "index.html"
    return site / stem / "index.html"


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    # No --quiet: it raises the log level above WARNING, and --strict counts warnings
    # through the log, so a quiet strict build passes a dangling link.
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(root / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_every_page_of_the_nav_is_built(site):
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    pages = nav_pages(config["nav"])
    assert len(pages) >= 20
    missing = [p for p in pages if not built(site, p).is_file()]
    assert not missing


def test_the_cli_reference_lists_every_command(site):
    from landscape.cli import cli

    html = built(site, "reference/cli.md").read_text()
    listed = set(re.findall(r'<h3 id="landscape-([\w-]+)"', html))
    assert listed == set(cli.commands)


def test_findings_are_published_with_their_figures(site):
    page = built(site, "findings/index.md")
    html = page.read_text()
    findings = (ROOT / "experiments" / "FINDINGS.md").read_text()
    # every section heading of FINDINGS.md, the verdict table's among them, is a heading
    built_headings = {html_text.unescape(re.sub(r"<[^>]+>", "", h)).replace("¶", "").strip()
                      for h in re.findall(r"<h[1-3][^>]*>(.*?)</h[1-3]>", html, flags=re.S)}
    for heading in re.findall(r"(?m)^#{1,3} (.+)$", findings):
        plain = re.sub(r"[`*]", "", heading).strip()
        assert plain in built_headings, heading
    if re.search(r"(?m)^\| *claim *\| *verdict", findings):
        assert re.search(r"<th[^>]*>\s*claim\s*</th>\s*<th[^>]*>\s*verdict", html)
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)
    named = set(re.findall(r"figures/([\w.-]+\.png)", findings))
    assert len(sources) >= len(named) > 0
    for src in sources:
        assert (page.parent / src).resolve().is_file(), src


REMOTE = re.compile(r"^\s*[\"']?(?:https?:)?//")


def fetched(path: Path) -> list[str]:
    """The addresses a built HTML or CSS file makes a browser load: scripts,
    stylesheets, fonts, preconnects, images, CSS imports and urls."""
    text = path.read_text(errors="replace")
    if path.suffix == ".css":
        return re.findall(r"(?:@import|url\()\s*([^)\s;]+)", text)
    found = re.findall(r"<(?:script|img|iframe|source)\b[^>]*?\ssrc=\"([^\"]*)\"", text)
    for tag in re.findall(r"<link\b[^>]*>", text):
        rel = re.search(r'\srel="([^"]*)"', tag)
        href = re.search(r'\shref="([^"]*)"', tag)
        if rel and href and rel.group(1) in {"stylesheet", "preload", "preconnect", "modulepreload",
                                             "dns-prefetch", "icon"}:
            found.append(href.group(1))
    return found


def test_nothing_is_fetched_from_the_network(site):
    pages = [p for p in site.rglob("*") if p.suffix in {".html", ".css"}]
    assert any(p.suffix == ".css" for p in pages)
    offenders = [f"{p.relative_to(site)}: {a}" for p in pages for a in fetched(p) if REMOTE.match(a)]
    assert not offenders


def test_definition_blocks_of_docstrings_become_lists():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from griffe_rst import markdown_layout
    finally:
        sys.path.pop(0)
    text = (
        "Modes:\n\n"
        "``eval``     the stored\n"
        "             statistics;\n"
        "``batch``    its own batch.\n"
        "After the list.\n\n"
        "A table::\n\n"
        "    forward(x)     logits\n"
        "    embed          the table\n\n"
        "``alone``\n"
        "           on its own line.\n"
    )
    assert markdown_layout(text) == (
        "Modes:\n\n"
        "- ``eval`` — the stored statistics;\n"
        "- ``batch`` — its own batch.\n\n"
        "After the list.\n\n"
        "A table:\n\n"
        "    forward(x)     logits\n"
        "    embed          the table\n\n"
        "- ``alone`` — on its own line.\n"
    )
