"""Load a YAML data file into a pydantic model with errors that name the bad key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from cutline.base.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: Path, what: str) -> Any:
    """Parse ``path`` as YAML, or raise ConfigError saying what is wrong with it."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{what} file {path} does not exist.", hint="Check the path in your settings."
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} file {path} is not valid YAML: {exc}") from None


def validate_model(raw: Any, model: type[M], what: str, path: Path) -> M:
    """Validate parsed YAML as ``model``, or raise ConfigError naming every bad key."""
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(
            f"{what} file {path} is invalid: {problems}.",
            hint="Compare it with the default in the project's rules/ folder.",
        ) from None


def load_model(path: Path, model: type[M], what: str) -> M:
    """Parse ``path`` as YAML and validate it as ``model``, or raise ConfigError."""
    return validate_model(load_yaml(path, what), model, what, path)
