"""`python -m cutline` runs the CLI."""

from cutline.ops.cli import app

app(prog_name="cutline")
