from cnntrain.cli import cli  # noqa
