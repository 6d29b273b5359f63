"""The click commands, one module per group; cnntrain/cli.py registers them on its group."""
