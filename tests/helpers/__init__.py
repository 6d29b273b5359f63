"""Shared test helpers: the CLI wrapper, process reaping, run-folder facts, tiny models and data
files in real formats, and the layout check (python -m tests.helpers.layout)."""
