"""Build-time pages: publish the files that live beside the code, never copies of them.

``experiments/FINDINGS.md`` becomes ``findings/index.md`` (with the figures of
``figures/`` it names shown in the section that names them),
``experiments/HISTORY.md`` becomes ``findings/history.md`` and ``bench/RESULTS.md``
becomes ``developers/benchmarks.md``.  Links between these files are rewritten to
the pages they became; a link to any other file of the repository keeps its text
and loses its target, since the site does not carry the code.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent

# repository file -> the page it becomes, as a path inside the site
PUBLISHED = {
    "experiments/FINDINGS.md": "findings/index.md",
    "experiments/HISTORY.md": "findings/history.md",
    "bench/RESULTS.md": "developers/benchmarks.md",
}
FIGURES = "figures"  # repository folder, published as findings/figures/

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_FIGURE_MENTION = re.compile(r"(?<![\w/])(?:\.\./)?figures/([\w.-]+\.png)")


def _resolve(source: str, target: str) -> str:
    """The repository path a relative link ``target`` in file ``source`` points to."""
    parts = Path(source).parent.joinpath(target).parts
    out: list[str] = []
    for part in parts:
        if part == "..":
            if out:
                out.pop()
        elif part != ".":
            out.append(part)
    return "/".join(out)


def _relative(page: str, target: str) -> str:
    """``target`` (a site path) as a link relative to the page ``page``."""
    up = len(Path(page).parent.parts)
    return "../" * up + target


def _rewrite_links(text: str, source: str, page: str) -> str:
    def replace(match: re.Match) -> str:
        bang, label, target = match.groups()
        if re.match(r"^[a-z]+:|^#", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        repo_path = _resolve(source, path)
        anchor = f"#{anchor}" if anchor else ""
        if repo_path.startswith(f"{FIGURES}/"):
            return f"{bang}[{label}]({_relative(page, 'findings/' + repo_path)}{anchor})"
        if repo_path in PUBLISHED:
            return f"{bang}[{label}]({_relative(page, PUBLISHED[repo_path])}{anchor})"
        return label  # a file of the repository: the site does not carry it
    return _LINK.sub(replace, text)


def _show_figures(text: str, page: str) -> str:
    """Show every figure a section names, once, at the end of that section."""
    sections = re.split(r"(?m)^(?=## )", text)
    shown: set[str] = set(re.findall(r"!\[[^\]]*\]\([^)]*figures/([\w.-]+\.png)", text))
    out = []
    for section in sections:
        named = [n for n in dict.fromkeys(_FIGURE_MENTION.findall(section)) if n not in shown]
        shown.update(named)
        if named:
            images = "\n\n".join(
                f"![{n}]({_relative(page, 'findings/figures/' + n)})" for n in named)
            section = section.rstrip("\n") + "\n\n" + images + "\n\n"
        out.append(section)
    return "".join(out)


def _page(source: str, page: str) -> str:
    path = ROOT / source
    if not path.exists():
        return f"# {Path(source).stem.title()}\n\nNo `{source}` in this checkout.\n"
    text = _rewrite_links(path.read_text(encoding="utf-8"), source, page)
    if page == PUBLISHED["experiments/FINDINGS.md"]:
        text = _show_figures(text, page)
    return text


def on_files(files, config):
    for source, page in PUBLISHED.items():
        files.append(File.generated(config, page, content=_page(source, page)))
    for png in sorted((ROOT / FIGURES).glob("*.png")):
        files.append(File.generated(config, f"findings/figures/{png.name}", abs_src_path=str(png)))
    return files


def on_config(config):
    # Every file a page of the site reads at build time, so `mkdocs serve` rebuilds on change.
    config.watch.extend(str(ROOT / p) for p in (*PUBLISHED, FIGURES, "landscape") if (ROOT / p).exists())
    return config


_ROLE = re.compile(r":(?:func|mod|class|meth|data|attr|exc|obj):(?=<code>)")


def on_page_content(html, page, config, files):
    # Module docstrings cite with Sphinx roles (:func:`name`); the site shows the name.
    return _ROLE.sub("", html)
