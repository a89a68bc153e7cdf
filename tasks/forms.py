"""What the Resume forms of review and sign-off runs share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def required_fields(*names: str) -> Callable[[dict[str, Any]], None]:
    """A `json_schema_extra` that keeps ``names`` in the form schema's required list even
    when the form starts from a refused answer (`RunInput.with_initial_data` gives every field
    a default, and the Prefect UI labels a field with a default "(Optional)")."""

    def extra(schema: dict[str, Any]) -> None:
        required = list(schema.get("required", []))
        schema["required"] = required + [n for n in names if n not in required]

    return extra
