"""The code keeps pyproject.toml's ruff rules: every run of the suite lints, so a finding fails it."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                             "cnntrain", "tests", "benchmarks"], cwd=REPO, capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, "All checks passed!\n"), result.stdout + result.stderr
