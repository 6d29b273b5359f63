"""Processes started by tests, always reaped: a failing test never leaves a fit running."""
from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


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


def killed_after(args: list[str], run, epochs: int, env=None, timeout: float = 120) -> dict:
    """Run `cnntrain ARGS` in its own process, SIGKILL it once `run`'s resume state counts `epochs`
    finished epochs, and return that state as the kill left it."""
    state = Path(run) / "backup" / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "cnntrain", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with reaped(proc):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if state.exists() and json.loads(state.read_text() or "{}").get("epochs_done", 0) >= epochs:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the fit never finished {epochs} epochs")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return json.loads(state.read_text())
