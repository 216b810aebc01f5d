"""Text that fits the console without breaking an identifier.

Site ids, model ids, directive ids, paths and hashes are what people copy from Sovereign's
output into the next command, so they are never split across lines and never cut short with an
ellipsis, at any width. Prose wraps between words only (:func:`say`). A table keeps every column
at least as wide as its longest word; when the console is too narrow for that, the same rows are
printed as a list instead (:func:`print_table`), one block per row.

It lives low in the layers (it needs only ``rich``) because both the CLI and the demo draw with
it; ``orchestrator.cli.output`` decides *where* output goes, this module decides how it fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

MIN_WIDTH = 20


def say(console: Console, markup: str, *, indent: int = 0) -> None:
    """Print a line of prose (rich markup) wrapped between words only: an identifier, a path
    or a hash is never split or cut, even when it is wider than the console (it overflows)."""
    from rich.text import Text

    text = Text.from_markup(markup)
    for line in wrap_words(text, max(console.width - indent, MIN_WIDTH)):
        console.print(Text(" " * indent) + line, soft_wrap=True, highlight=False)


def wrap_words(text: Text, width: int) -> list[Text]:
    """Split ``text`` at spaces into lines of at most ``width`` cells where its words allow;
    a word is never divided. Embedded newlines are kept."""
    lines: list[Text] = []
    for paragraph in text.split("\n", allow_blank=True):
        offsets = _breaks(paragraph.plain, width)
        parts = list(paragraph.divide(offsets)) if offsets else [paragraph]
        for part in parts:
            part.rstrip()
        lines.extend(parts)
    return lines


def wrap_plain(text: str, width: int) -> list[str]:
    """:func:`wrap_words` for text without markup, without ``rich``: the same lines."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        offsets = [0, *_breaks(paragraph, width), len(paragraph)]
        lines.extend(paragraph[a:b].rstrip() for a, b in zip(offsets, offsets[1:], strict=False))
    return lines


def _breaks(plain: str, width: int) -> list[int]:
    """Where to start a new line of ``plain``: after the last space before it grows wider than
    ``width``, never inside a word."""
    offsets: list[int] = []
    start = 0
    last_space = -1
    for i, ch in enumerate(plain):
        if ch == " ":
            last_space = i
        if i - start >= width and last_space > start:
            offsets.append(last_space + 1)
            start = last_space + 1
    return offsets


def _plain(markup: str) -> str:
    from rich.text import Text

    return Text.from_markup(markup).plain


def _longest_word(plain: str) -> int:
    return max((len(w) for w in plain.split()), default=0)


def _fit(mins: list[int], wants: list[int], room: int) -> list[int]:
    """Column widths: each at least its longest word, the spare room handed out to the columns
    that would wrap, one cell at a time to the one missing most (ties: leftmost)."""
    widths = list(mins)
    spare = room - sum(widths)
    while spare > 0:
        short = [(wants[i] - widths[i], -i) for i in range(len(widths)) if widths[i] < wants[i]]
        if not short:
            break
        _, neg = max(short)
        widths[-neg] += 1
        spare -= 1
    return widths


def print_table(
    console: Console,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    key_columns: int = 1,
) -> None:
    """Rows of rich-markup cells as a table, or as a list when the table cannot fit.

    Every column is given at least the width of its longest word, so that cells wrap only
    between words. When the console is narrower than that, each row becomes a block: its first
    ``key_columns`` cells as a heading, then ``column: value`` lines."""
    from rich import box
    from rich.table import Table

    plain = [[_plain(cell) for cell in row] for row in rows]
    mins = [
        max([_longest_word(header)] + [_longest_word(row[i]) for row in plain])
        for i, header in enumerate(columns)
    ]
    wants = [
        max([len(header)] + [max(map(len, row[i].split("\n"))) for row in plain])
        for i, header in enumerate(columns)
    ]
    # box.SIMPLE_HEAD without edges: one space of padding between a column and a separator.
    gaps = 3 * (len(columns) - 1)
    if title:
        say(console, f"[bold]{title}[/]")
    if sum(mins) + gaps <= console.width:
        table = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            header_style="bold",
            pad_edge=False,
            collapse_padding=False,
        )
        for header, width in zip(columns, _fit(mins, wants, console.width - gaps), strict=True):
            table.add_column(header, width=width, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    for row in rows:
        say(console, "  ".join(row[:key_columns]).replace("\n", " "))
        for header, cell in zip(columns[key_columns:], row[key_columns:], strict=True):
            lines = cell.split("\n")
            say(console, f"[dim]{header}:[/] {lines[0]}", indent=2)
            for more in lines[1:]:
                say(console, more, indent=4)
    console.print()
