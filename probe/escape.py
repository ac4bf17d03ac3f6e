"""Text from results, made safe for the medium a person reads it in.

Target names, run ids, labels, failure strings and AS names come from result
folders, and a result folder may come from anyone (a volunteer's upload, a
hostile server's error text). One helper per medium, each used wherever such a
text reaches that medium:

- `for_terminal`: a rich `Text` (never read as markup such as `[bold]`), with
  escape sequences and other control characters shown, not obeyed;
- `for_markdown`: a Markdown inline text (a table cell too) that stays one line
  and renders literally: no HTML, links, images, emphasis or math;
- `for_html`: HTML text or attribute content;
- `for_plot`: a matplotlib label that is never read as math text (`$...$`).

All four first make invisible and control characters visible (`\\n`, `\\x1b`,
`\\u202e`): a newline would break a table row, an ESC would drive the terminal,
a bidi override would reorder what is shown, a lone surrogate cannot be written.
"""

from __future__ import annotations

import html
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

# control, format (bidi, zero-width), surrogate, line and paragraph separator
_HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}
# Every character with a meaning inside a line of CommonMark or GitHub Markdown (HTML,
# entities, links and images, emphasis, code, table cells, strikethrough, math); CommonMark
# lets a backslash escape any ASCII punctuation character. Headings and list markers
# (`#`, `-`, `+`, `1.`) only count at the start of a line, where these texts never are.
_MARKDOWN = set("\\`*_{}[]()<>!|&~$")


def visible(text: object) -> str:
    """`text` with each control, format or separator character written as its escape."""
    s = str(text)
    if all(unicodedata.category(c) not in _HIDDEN for c in s):
        return s
    return "".join(c.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(c) in _HIDDEN else c for c in s)


def for_terminal(text: object) -> Text:
    """A rich Text cell or line: no markup, no emoji codes, no terminal escape sequences."""
    from rich.text import Text

    return Text(visible(text))


def for_markdown(text: object) -> str:
    """Markdown inline text (a table cell, text after a line's start) that renders as the
    literal characters, on one line."""
    return "".join("\\" + c if c in _MARKDOWN else c for c in visible(text))


def for_html(text: object) -> str:
    """HTML text or quoted attribute value."""
    return html.escape(visible(text), quote=True)


def for_plot(text: object) -> str:
    """A matplotlib title or label: every `$` escaped, so nothing is parsed as math text
    (an unknown macro in `$...$` would make the whole figure fail)."""
    return visible(text).replace("$", "\\$")
