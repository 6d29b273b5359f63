"""A script run on a real terminal (a pseudo-terminal), and what the user would see of it."""
import os
import pty
import re
import subprocess
import sys

# Colour, cursor and title sequences: what a terminal acts on rather than shows.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_pty(script: str, args=(), keep_returns: bool = False) -> str:
    """All that `python -c SCRIPT ARGS` writes to its terminal, escape sequences taken out; carriage
    returns too unless `keep_returns` (a live bar redraws its line after each one). The script sets
    the terminal's size itself; COLUMNS and the colour variables are left out of its environment so
    that the size it sets is the one rich reads."""
    main, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR",
                                                             "TTY_COMPATIBLE")}
    process = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdin=child, stdout=child,
                               stderr=child, env={**env, "TERM": "xterm-256color"}, close_fds=True)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:   # EIO: the child side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert process.wait(timeout=120) == 0, b"".join(chunks).decode("utf-8", "replace")
    text = b"".join(chunks).decode("utf-8", "replace")
    return ESCAPES.sub("", text if keep_returns else text.replace("\r", ""))
