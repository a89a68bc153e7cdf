"""The `cutline` command, one module per noun: the Typer apps and entry point (`app`), the
stack and worker hosts (`stack_cmds`), running and following shoots (`run_cmds`), evaluation
(`eval_cmds`), models, the DAM, the review queue and sign-off. Importing this package
registers every command, in the order `cutline --help` lists them."""

# isort: off
from cutline.ops.cli import stack_cmds  # noqa: F401  (each module registers its commands)
from cutline.ops.cli import run_cmds  # noqa: F401
from cutline.ops.cli import eval_cmds  # noqa: F401
from cutline.ops.cli import models_cmds  # noqa: F401
from cutline.ops.cli import dam_cmds  # noqa: F401
from cutline.ops.cli import review_cmds  # noqa: F401
from cutline.ops.cli import signoff_cmds  # noqa: F401

# isort: on
from cutline.ops.cli.app import app, main

__all__ = ["app", "main"]
