"""The one error type library code raises; only the CLI turns it into a message."""
from __future__ import annotations


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
        parts = [str(self.file)]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class SpecError(CnntrainError):
    """A mistake in a spec file or a --set override."""


def plural(count, noun: str) -> str:
    """'1 epoch', '2 epochs': messages and tables count things, and '1 epochs' reads as a slip."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
