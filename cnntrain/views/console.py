"""The two consoles: results on stdout, messages and progress on stderr (figures are formatted by runs.numbers)."""
from __future__ import annotations

import textwrap

from rich.console import Console, ConsoleDimensions
from rich.markup import escape as _markup_escape

from cnntrain.errors import printable

# Wide enough for any table we print: a file or a pipe has no width to fit.
UNBOUNDED = 100_000


class _Console(Console):
    """A Console that fits its tables to a terminal only. Piped or redirected, rich would take the
    width of whatever terminal the process started from (or $COLUMNS, or 80) and cut numbers and
    names to fit it; a file gets each table at its full width instead."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(UNBOUNDED, size.height)


out = _Console(highlight=False, soft_wrap=True, emoji=False)   # a name like "x:cat:.png" printed as it is
err = _Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def escape(text) -> str:
    """Text that came from a file (a class, layer or file name, a path) as rich prints it
    literally: control characters written as \\xNN (rich passes ESC through to the terminal),
    then '[' escaped so it is never read as markup. Every view prints such text through here."""
    return _markup_escape(printable(text))


def fitted(text: str, width: int = UNBOUNDED) -> str:
    """A message folded between words to `width`, each line on its own, continuation lines
    indented two spaces past the line's own indent: a terminal would otherwise break it anywhere,
    mid-word or mid-number. A word longer than the line (a long path) is kept whole."""
    if max(map(len, text.split("\n"))) <= width:
        return text
    folded = []
    for line in text.split("\n"):
        indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
        folded.append(textwrap.fill(line, width, subsequent_indent=indent, break_long_words=False,
                                    break_on_hyphens=False) if len(line) > width else line)
    return "\n".join(folded)


def note(text: str, style: str | None = None) -> None:
    """A message to the user on stderr, printed literally and folded to a terminal: every note and
    warning of every command (the Reporter's too) is printed here."""
    err.print(fitted(escape(text), err.size.width), style=style)


def error(text: str) -> None:
    """An error as the user reads it (`FILE:LINE:COL: message` and its `  hint:` line), on stderr,
    folded to a terminal as a note is; piped, whole."""
    err.print(fitted(_markup_escape(printable(text, newlines=True)), err.size.width))


def warn(text: str) -> None:
    """A warning on stderr: `warning: TEXT` in yellow, printed as a note is."""
    note(f"warning: {text}", style="yellow")


def fields_line(fields: list[str], width: int = UNBOUNDED) -> str:
    """Fields ("accuracy 97.10%", "1.2s") as one line, two spaces apart, fitted to `width` without
    cutting one: one space apart if that fits, else folded between fields (continuation lines
    indented), so a terminal never breaks a figure in two."""
    for gap in ("  ", " "):
        line = gap.join(fields)
        if len(line) <= width:
            return line
    lines = [fields[0]]
    for field in fields[1:]:
        if len(lines[-1]) + 1 + len(field) <= width:
            lines[-1] += " " + field
        else:
            lines.append("  " + field)
    return "\n".join(lines)


def choose_mode(quiet: bool, as_json: bool) -> str:
    """The Reporter mode (cnntrain.views.reporter) for the flags and whether stderr is a terminal."""
    if as_json:
        return "json"
    if quiet:
        return "quiet"
    return "rich" if err.is_terminal else "plain"
