"""A tiny document model of the report and its two renderings (self-contained HTML, Markdown).

The report is built once as a list of blocks — headings, paragraphs, tables, figures, folded
``<details>`` sections — and rendered twice, so the HTML page and the Markdown file hold the same
tables. HTML tables colour each row by its CSS class (the verdict); Markdown shows the verdict word.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

__all__ = ["CSS", "Bullets", "Details", "Figure", "Heading", "Legend", "Para", "Pre", "Table", "to_html", "to_markdown"]


@dataclass
class Table:
    """``header`` and ``rows`` of display strings; ``classes`` one CSS class per row (or empty);
    the first ``left`` columns are text (left-aligned), the others numbers; ``caption`` goes above
    the table, ``note`` (a footnote) below it."""

    header: list[str]
    rows: list[list[str]]
    classes: list[str] = field(default_factory=list)
    caption: str = ""
    left: int = 2
    note: str = ""


@dataclass
class Heading:
    text: str
    level: int = 2
    anchor: str = ""


@dataclass
class Para:
    text: str
    css: str = ""  # "summary" (the one-line answer), "note", or ""


@dataclass
class Figure:
    png: Path
    title: str
    caption: str


@dataclass
class Pre:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Legend:
    """The verdict colour key shown above a claim's tables."""


@dataclass
class Details:
    summary: str
    blocks: list = field(default_factory=list)


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1160px;margin:1.5em auto;
padding:0 1em;color:#1a1a1a;line-height:1.45;background:#fff}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.02em;margin:1.1em 0 .3em}
table{border-collapse:collapse;font-size:.8em;margin:.3em 0 .8em;width:100%}
th,td{border:1px solid #d6d6d6;padding:.18em .4em;text-align:right;vertical-align:top;white-space:nowrap}
th,td.l,td.verdict{white-space:normal}
th{background:#f1f1f1;font-weight:600}th.l,td.l,td.verdict,th.verdict{text-align:left}caption{font-size:.95em;text-align:left;color:#333}.tnote{color:#555;font-size:.8em;margin:-.6em 0 .8em}
tr.more td{background:#dcefd8}tr.less td{background:#f9dfcc}tr.inconclusive td{background:#f2f2f2}
tr.more td.verdict{color:#1b5e20;font-weight:600}tr.less td.verdict{color:#8c3b00;font-weight:600}
.summary{background:#f6f8fb;border-left:4px solid #0072B2;padding:.35em .7em;margin:.4em 0}
.note,figcaption{color:#555;font-size:.86em}figure{margin:.6em 0 1.2em}
figure img{max-width:100%;height:auto;border:1px solid #eee}
details{margin:.4em 0 .8em}details>summary{cursor:pointer;color:#0b4f80}
pre{background:#f7f7f7;padding:.7em;overflow:auto;font-size:.78em;max-height:30em}
.scroll{overflow-x:auto;max-width:100%}.key span{display:inline-block;padding:0 .5em;margin-right:.4em;font-size:.82em}
.key .more{background:#dcefd8}.key .less{background:#f9dfcc}.key .inconclusive{background:#f2f2f2}
"""

_KEY = (
    '<p class="key"><span class="more">more similar (or positive)</span><span class="less">less similar '
    '(or negative)</span><span class="inconclusive">inconclusive</span></p>'
)


def _html_table(t: Table) -> str:
    e = html.escape
    verdict_col = next((i for i, h in enumerate(t.header) if h.lower().startswith("verdict")), -1)
    out = ['<div class="scroll"><table>']
    if t.caption:
        out.append(f"<caption>{e(t.caption)}</caption>")

    def css(j: int) -> str:
        names = (["l"] if j < t.left else []) + (["verdict"] if j == verdict_col else [])
        return f' class="{" ".join(names)}"' if names else ""

    out.append(
        "<thead><tr>" + "".join(f"<th{css(j)}>{e(h)}</th>" for j, h in enumerate(t.header)) + "</tr></thead><tbody>"
    )
    for i, row in enumerate(t.rows):
        cls = t.classes[i] if i < len(t.classes) and t.classes[i] else ""
        cells = "".join(f"<td{css(j)}>{e(c)}</td>" for j, c in enumerate(row))
        out.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    out.append("</tbody></table></div>")
    if t.note:
        out.append(f'<p class="tnote">{e(t.note)}</p>')
    return "".join(out)


def _img(png: Path, alt: str) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _html_blocks(blocks: list) -> list[str]:
    e = html.escape
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            anchor = f' id="{e(b.anchor)}"' if b.anchor else ""
            out.append(f"<h{b.level}{anchor}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f'<p class="{b.css}">{e(b.text)}</p>' if b.css else f"<p>{e(b.text)}</p>")
        elif isinstance(b, Table):
            out.append(_html_table(b))
        elif isinstance(b, Figure):
            out.append(f"<figure>{_img(b.png, b.title)}<figcaption>{e(b.title)}. {e(b.caption)}</figcaption></figure>")
        elif isinstance(b, Pre):
            out.append(f"<pre>{e(b.text)}</pre>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Legend):
            out.append(_KEY)
        elif isinstance(b, Details):
            out.append(f"<details><summary>{e(b.summary)}</summary>")
            out += _html_blocks(b.blocks)
            out.append("</details>")
        else:
            raise TypeError(f"unknown report block {type(b).__name__}")
    return out


def to_html(blocks: list, title: str) -> str:
    """One self-contained HTML page (inline CSS, images as base64; no scripts, no external resources)."""
    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    return "\n".join(head + _html_blocks(blocks) + ["</body>", "</html>"]) + "\n"


_MD_INLINE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "\\`", "\\": "\\\\", "\n": " ", "\r": " "})
_MD_LINE_START = re.compile(r"^(\s*)(?:([#>+=~*_\[|-])|(\d+)([.)]))")


def _md_inline(text: object) -> str:
    """``text`` as literal Markdown inside a line, as :func:`html.escape` makes it literal HTML: no
    raw HTML or autolinks (``<`` ``>`` ``&`` as entities), no code spans, no links or images (``](``
    and ``![`` escaped), one line."""
    out = str(text).translate(_MD_INLINE)
    return out.replace("](", "]\\(").replace("![", "!\\[")


def _md(text: object) -> str:
    """:func:`_md_inline`, and no heading, quote, list, rule or link definition made by the first
    characters (the text starts a line)."""

    def escape(m: re.Match) -> str:
        return m.group(1) + ("\\" + m.group(2) if m.group(2) else m.group(3) + "\\" + m.group(4))

    return _MD_LINE_START.sub(escape, _md_inline(text))


def _md_cell(text: str) -> str:
    return _md_inline(text).replace("|", "\\|")


def _md_table(t: Table) -> list[str]:
    verdict_col = next((i for i, h in enumerate(t.header) if h.lower().startswith("verdict")), -1)
    lines = ["| " + " | ".join(_md_cell(h) for h in t.header) + " |", "|" + "---|" * len(t.header)]
    for row in t.rows:
        cells = [f"**{_md_cell(c)}**" if j == verdict_col and c else _md_cell(c) for j, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        ([f"*{_md(t.caption)}*", ""] if t.caption else []) + lines + [""] + ([f"*{_md(t.note)}*", ""] if t.note else [])
    )


def _md_blocks(blocks: list, root: Path) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + _md(b.text), ""]
        elif isinstance(b, Para):
            text = _md(b.text)
            out += [f"> {text}" if b.css == "summary" else (f"*{text}*" if b.css == "note" else text), ""]
        elif isinstance(b, Table):
            out += _md_table(b)
        elif isinstance(b, Figure):
            try:
                rel = Path(b.png).resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                rel = Path(b.png).as_posix()
            alt = _md_inline(b.title).replace("]", "\\]")
            out += [f"![{alt}]({quote(rel)})", "", f"*{_md_inline(b.title)}. {_md_inline(b.caption)}*", ""]
        elif isinstance(b, Pre):
            fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", b.text)), default=0))
            out += [fence, b.text.rstrip(), fence, ""]  # a fence longer than any backtick run inside
        elif isinstance(b, Bullets):
            out += [f"- {_md(i)}" for i in b.items] + [""]
        elif isinstance(b, Legend):
            continue
        elif isinstance(b, Details):
            out += [f"<details><summary>{html.escape(b.summary)}</summary>", ""]
            out += _md_blocks(b.blocks, root)
            out += ["</details>", ""]
        else:
            raise TypeError(f"unknown report block {type(b).__name__}")
    return out


def to_markdown(blocks: list, title: str, root: Path) -> str:
    """The same document as Markdown; figures are linked relative to ``root`` (the report folder).
    Every string is escaped (:func:`_md`) as the HTML rendering escapes it."""
    return "\n".join([f"# {_md(title)}", ""] + _md_blocks(blocks, root)) + "\n"
