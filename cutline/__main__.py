"""`python -m cutline` runs the CLI."""

from cutline.ops.cli import main

main()
