"""Read the module docstrings' plain-text layout as Markdown when the site renders them.

The docstrings are written for ``help()``: aligned definition blocks
(````name``   what it is``, continued on lines indented to the description) and
literal blocks introduced by ``::``.  Markdown would run a definition block into one
paragraph, so each entry becomes a list item; a literal block stays indented code
and its ``::`` becomes ``:``.  The docstrings themselves are not changed.
"""

from __future__ import annotations

import re

import griffe

# a term (a ``literal`` or one word) at the start of a line, then two spaces or more
_ENTRY = re.compile(r"^(?P<indent> *)(?P<term>``[^`]+``|[\w.:*-]+)(?P<gap> {2,})(?P<text>\S.*)$")
_TERM_ONLY = re.compile(r"^(?P<indent> *)(?P<term>``[^`]+``)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def markdown_layout(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    literal_from = None  # indentation of the paragraph that opened a literal block
    group = None  # the description column of the entries just converted
    while i < len(lines):
        line = lines[i]
        if literal_from is not None:
            if line.strip() and _indent(line) <= literal_from:
                literal_from = None
            else:
                out.append(line)
                i += 1
                continue
        if line.rstrip().endswith("::"):
            out.append(line.rstrip()[:-1])
            literal_from = _indent(line)
            i += 1
            continue
        entry = _ENTRY.match(line)
        term_only = _TERM_ONLY.match(line)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        column = len(line) - len(entry["text"]) if entry else None
        if term_only and nxt.strip() and _indent(nxt) > _indent(line) + 2:
            column, first = _indent(nxt), [nxt.strip()]
            i += 1
        elif entry and (
            column == group
            or (nxt.strip() and _indent(nxt) == len(line) - len(entry["text"]))
            or _ENTRY.match(nxt)
            and len(nxt) - len(_ENTRY.match(nxt)["text"]) == len(line) - len(entry["text"])
        ):
            first = [entry["text"]]
        else:
            if group is not None and line.strip():
                out.append("")  # the list ends here, not in a lazy continuation
            group = None
            out.append(line)
            i += 1
            continue
        indent = " " * _indent(line)
        term = (term_only or entry)["term"]
        body = first
        i += 1
        while i < len(lines) and lines[i].strip() and _indent(lines[i]) >= column:
            body.append(lines[i].strip())
            i += 1
        if out and out[-1].strip() and not out[-1].lstrip().startswith("- "):
            out.append("")
        out.append(f"{indent}- {term} — " + " ".join(body))
        group = column
    return "\n".join(out)


class MarkdownLayout(griffe.Extension):
    """Apply :func:`markdown_layout` to every module docstring the site renders."""

    def on_module_instance(self, *, mod, **kwargs) -> None:
        if mod.docstring is not None:
            mod.docstring.value = markdown_layout(mod.docstring.value)
