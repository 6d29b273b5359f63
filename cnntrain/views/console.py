"""The two consoles: results on stdout, messages and progress on stderr; number formatting."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape as _markup_escape

from cnntrain.errors import printable

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def escape(text) -> str:
    """Text that came from a file (a class, layer or file name, a path) as rich prints it
    literally: control characters written as \\xNN (rich passes ESC through to the terminal),
    then '[' escaped so it is never read as markup. Every view prints such text through here."""
    return _markup_escape(printable(text))


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def choose_mode(quiet: bool, as_json: bool) -> str:
    """The Reporter mode (cnntrain.views.reporter) for the flags and whether stderr is a terminal."""
    if as_json:
        return "json"
    if quiet:
        return "quiet"
    return "rich" if err.is_terminal else "plain"
