"""Running cnntrain the way a user does: through click, or in a fresh Python process."""
from __future__ import annotations

import re
import subprocess
import sys

from click.testing import CliRunner


LOW_CONFIDENCE = re.compile(r"note: .+: low confidence \(.+ [01]\.\d{4}, under 0\.5\); the image may not show any "
                            r"of the \d+ classes the model knows\n|note: [\d,]+ of [\d,]+ images have low confidence "
                            r"\(a top probability under 0\.5\); they may not show any of the \d+ classes the model "
                            r"knows \(--json marks each: low_confidence\)\n")


def without_low_confidence(stderr: str) -> str:
    """predict's stderr without its low-confidence notes: a barely trained test model is unsure of most
    images, and a test about something else need not depend on how unsure."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not LOW_CONFIDENCE.fullmatch(line))


def run_cli(*args):
    """`cnntrain ARGS` through click's runner; stdout and stderr stay apart (result.stdout, result.stderr)."""
    from cnntrain.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def modules_after(code: str) -> list[str]:
    """Run `code` in a fresh interpreter and return which of TensorFlow and Keras it imported."""
    probe = code + "; import sys; print(' '.join(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return result.stdout.split()
