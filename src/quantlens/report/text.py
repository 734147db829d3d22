"""Names from files are data: make them inert in the medium they land in.

Tensor, node and file names come from models and paths anyone can craft. On a terminal an ESC
or OSC sequence would restyle it, set its title or write links; rich would read ``[bold]`` or
``[/]`` as markup; in Markdown a backtick or a newline ends a code span and starts a heading,
a link or raw HTML. Each function here gives the one safe spelling of a name for its medium;
renderers call them on every string that came from data.
"""

from __future__ import annotations

import re

#: C0 and C1 control characters and DEL: invisible, and the start of every escape sequence.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: Longest name shown whole; longer ones are cut in the middle (a crafted name can be huge).
MAX_NAME = 200
#: Prose built from names (a list of kept ops, an explanation): long, never a flood.
LONG_TEXT = 4000


def visible(text: object, limit: int = MAX_NAME) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\n``) and
    cut to ``limit`` characters: one line, nothing a terminal or a reader would act on."""
    s = _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), str(text))
    if len(s) > limit:
        half = (limit - 1) // 2
        s = s[:half] + "…" + s[-half:]
    return s


def term(text: object, limit: int = MAX_NAME) -> str:
    """A name for rich console output: :func:`visible`, with rich markup escaped."""
    from rich.markup import escape

    return escape(visible(text, limit))


def md_code(text: object, limit: int = MAX_NAME) -> str:
    """A name as a Markdown code span: fenced with more backticks than it holds (and padded
    when it starts or ends with one), so nothing inside it is read as Markdown or HTML."""
    s = visible(text, limit)
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


#: What can start a Markdown construct in the middle of a line: emphasis, code, links and
#: images, raw HTML and entities, tables, strikethrough, and the ':' of a GFM autolink. Line-
#: start constructs (headings, lists) cannot occur: prose is always placed after other text.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~!&:])")


def md_text(text: object, limit: int = 2000) -> str:
    """Prose holding names (a warning, a reason) for Markdown: on one line, with every
    character that could start Markdown or HTML mid-line backslash-escaped (and 'www.', which
    GFM would make a link)."""
    escaped = _MD_SPECIAL.sub(r"\\\1", visible(text, limit))
    return re.sub(r"(?i)\bwww\.", lambda m: m.group()[:-1] + "\\.", escaped)
