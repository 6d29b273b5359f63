"""The one error type library code raises; only the CLI turns it into a message.

Also the two guards every reader of a user's file shares: text from a file is made printable
before it reaches a terminal, and only regular files are opened (a FIFO blocks forever).
"""
from __future__ import annotations

import os
import stat

# C0 controls, DEL and C1 controls: ESC starts terminal escapes (\x1b]0;...\x07 sets the window
# title, \x1b[2J clears the screen), and C1 0x9b is a one-byte CSI on some terminals.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f, *range(0x80, 0xa0))}
_CONTROLS_BUT_NEWLINE = {c: v for c, v in _CONTROLS.items() if c != 0x0a}


def printable(text, *, newlines: bool = False) -> str:
    """`text` with every control character written as \\xNN, so a name or message taken from a
    file cannot drive the terminal. `newlines` keeps line breaks (multi-line messages)."""
    return str(text).translate(_CONTROLS_BUT_NEWLINE if newlines else _CONTROLS)


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def not_regular(path) -> str | None:
    """What `path` is when it exists and is not a regular file ("a FIFO (named pipe)", ...),
    else None. Follows symbolic links, as open() does; never opens the file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None   # missing or unreadable: open() gives the precise error
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


class CnntrainError(Exception):
    """A user-facing error: what was wrong, where, and what to do.

    `file`, `line` and `column` point at the cause (a spec line, a data file);
    line and column are 1-based. `hint` says how to fix it. `exit_code` is the
    process's exit status when the CLI reports it (130 after Ctrl-C).
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: int | None = None, hint: str | None = None, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.hint = hint

    @property
    def location(self) -> str | None:
        if self.file is None:
            return None
        parts = [printable(self.file)]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        message = printable(self.message, newlines=True)
        text = f"{self.location}: {message}" if self.location else message
        if self.hint:
            text += f"\n  hint: {printable(self.hint, newlines=True)}"
        return text


class SpecError(CnntrainError):
    """A mistake in a spec file or a --set override."""


class FolderLocked(CnntrainError):
    """Another cnntrain process holds the folder's lock (a fit, a sweep, an export)."""


def first_lines_of(exc, n=3) -> str:
    """The first `n` lines of an exception's text, as quoted in our messages."""
    text = str(exc).strip() or type(exc).__name__
    text = text.replace(".__init__()", "")
    lines = text.splitlines()
    return " ".join(line.strip() for line in lines[:n]) + (" ..." if len(lines) > n else "")


class YamlSyntaxError(SpecError):
    """Text that is not YAML at all (as opposed to YAML that the spec's rules refuse)."""


class DataNotFound(CnntrainError):
    """A data set found nowhere: `summary` says so in one line, the message also lists where it was looked for."""

    def __init__(self, summary: str, looked: str, rest: str = "", **kwargs):
        super().__init__(f"{summary}; looked at:\n{looked}{rest}", **kwargs)
        self.summary = summary


class BrokenImageError(CnntrainError):
    """An image file its decoder cannot read: a data set's reader gathers these to name them all."""


class DataChanged(CnntrainError):
    """A file read during a run changed or vanished since the data set was loaded: an image that
    data.cache: none decodes again at every epoch, a decoded-image cache file truncated."""


def plural(count, noun: str) -> str:
    """'1 epoch', '2 epochs': messages and tables count things, and '1 epochs' reads as a slip."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
