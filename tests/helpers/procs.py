"""Processes started by tests, always reaped: a failing test never leaves a fit running."""
from __future__ import annotations

import contextlib
import subprocess


@contextlib.contextmanager
def reaped(*procs: subprocess.Popen):
    """Yield; then kill whatever of `procs` is still running and wait for it."""
    try:
        yield procs[0] if len(procs) == 1 else procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=60)


def outputs(procs, timeout: float) -> list[tuple[int, str, str]]:
    """(returncode, stdout, stderr) of each process, waiting at most `timeout` s for each; reaped."""
    results = []
    with reaped(*procs):
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            results.append((proc.returncode, out, err))
    return results
