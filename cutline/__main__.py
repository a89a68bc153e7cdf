"""`python -m cutline` runs the CLI."""

from cutline.cli import app

app(prog_name="cutline")
