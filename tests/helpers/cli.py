"""Running cnntrain the way a user does: through click, or in a fresh Python process."""
from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner


def run_cli(*args):
    """`cnntrain ARGS` through click's runner; stdout and stderr stay apart (result.stdout, result.stderr)."""
    from cnntrain.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def modules_after(code: str) -> list[str]:
    """Run `code` in a fresh interpreter and return which of TensorFlow and Keras it imported."""
    probe = code + "; import sys; print(' '.join(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return result.stdout.split()
