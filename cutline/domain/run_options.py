"""One run configuration: which settings belong to a run, which to the host that runs it.

A shoot runs wherever its deployment's runs execute (the stack's worker, a worker on
another machine), with that process's settings. A setting exported in the shell that runs
`cutline run` would otherwise be silently dropped. So every setting has one home:

- **Run options** (`RUN_OPTION_FIELDS`): what a producer may choose per shoot (model, rules,
  channel presets, inference size, batching). They are run parameters (`RunOptions`): visible
  and editable in the UI's Custom run, shown on the run page, frozen with the run by content
  (rules and presets travel as their YAML, not as a path). `cutline run` forwards those set in
  its environment.
- **Client settings** (`CLIENT_FIELDS`): where the submitting process finds its stack and
  keeps its own files; they never reach a run.
- **Secrets** (`SECRET_FIELDS`): credentials are never parameters; each process uses its own,
  and the host running a shoot proves at preflight that its own can read the shoot.
- **Host policy** (everything else: residency, allowed roots, DAM target, S3 endpoint, the
  model home each host loads models from, workers, limits ...): the executing host's own. `cutline run` sends the values its
  environment sets (`host_expectations`) and the run refuses to start when the host's differ
  (`refuse_other_host_settings`), naming each setting; it never adopts them, so a run
  parameter can only stop a run, never loosen a host's policy.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cutline.base.errors import ConfigError
from cutline.base.settings import BatchOrder, CutlineSettings, settings_error
from rules.engine import RuleSet, load_rules, rules_from_text, rules_text
from rules.presets import PresetBook, load_presets, presets_from_text, presets_text

RUN_OPTION_FIELDS = (
    "model",
    "rules_file",
    "presets_file",
    "model_input_max_side",
    "confidence_second_view",
    "batch_size",
    "batch_order",
    "png_compress_level",
    "manifest_date_order",
    "sku_pattern",
    "stage_retry_delays",
    "output_root",  # the run's `output_root` parameter
)
CLIENT_FIELDS = (
    "data_root",
    "server_host",
    "server_port",
    "server_database_url",
    "server_pause_expiry_check_seconds",
    "shoot_deployment",
    "work_pool",
)
SECRET_FIELDS = (
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_profile",
    "dam_http_token",
)


def host_fields() -> tuple[str, ...]:
    """Every setting that is the executing host's policy (see the module docstring)."""
    others = {*RUN_OPTION_FIELDS, *CLIENT_FIELDS, *SECRET_FIELDS}
    return tuple(name for name in CutlineSettings.model_fields if name not in others)


def env_name(field: str) -> str:
    """The environment variable of a setting."""
    return f"CUTLINE_{field.upper()}"


class RunOptions(BaseModel):
    """Settings chosen for one shoot (empty: the executing host's setting applies)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(
        default=None, description="Model name (e.g. u2netp) or ONNX path on the workers."
    )
    rules: str | None = Field(
        default=None,
        description="Routing rules as YAML (what `cutline run --rules FILE` sends: the file "
        "with its fragments merged in). Empty: the host's CUTLINE_RULES_FILE.",
    )
    presets: str | None = Field(
        default=None,
        description="Channel presets as YAML. Empty: the host's CUTLINE_PRESETS_FILE.",
    )
    model_input_max_side: int | None = Field(
        default=None, description="Long side (px) of the decode the model sees."
    )
    confidence_second_view: bool | None = Field(
        default=None, description="Whether the confidence score's second, padded view runs."
    )
    batch_size: int | None = Field(default=None, description="Images per stage task.")
    batch_order: BatchOrder | None = Field(default=None, description="streaming or stage-by-stage.")
    png_compress_level: int | None = Field(default=None, description="zlib level of PNGs.")
    manifest_date_order: str | None = Field(
        default=None, description="day-first or month-first for numeric manifest dates."
    )
    sku_pattern: str | None = Field(
        default=None, description="Regex taking the SKU from a file name without manifest row."
    )
    stage_retry_delays: list[float] | None = Field(
        default=None, description="Seconds between a stage's retries of a batch."
    )
    host_settings: dict[str, Any] | None = Field(
        default=None,
        description="Set by `cutline run`: the host settings (residency, allowed roots, DAM, "
        "...) its environment sets. The run refuses to start on a host whose own differ; it "
        "never takes them over. Leave empty in the UI.",
    )

    def settings_for(self, host: CutlineSettings) -> CutlineSettings:
        """The host's settings with this run's options laid over them, validated as settings
        (a bad option is refused like a bad environment variable)."""
        chosen = self.model_dump(exclude_none=True, exclude={"rules", "presets", "host_settings"})
        if not chosen:
            return host
        try:
            return CutlineSettings.model_validate({**host.model_dump(), **chosen})
        except ValidationError as exc:
            raise settings_error(exc) from None

    def rule_set(self, settings: CutlineSettings) -> tuple[RuleSet, str]:
        """The run's rules and where they came from."""
        if self.rules:
            return rules_from_text(self.rules, "the run's rules parameter"), "run parameter"
        return load_rules(settings.rules_file), str(settings.rules_file)

    def preset_book(self, settings: CutlineSettings) -> tuple[PresetBook, str]:
        """The run's channel presets and where they came from."""
        if self.presets:
            return presets_from_text(self.presets, "the run's presets parameter"), "run parameter"
        return load_presets(settings.presets_file), str(settings.presets_file)


def options_from_environment(settings: CutlineSettings) -> RunOptions:
    """The run options and host expectations of the settings this process was given
    explicitly (environment or .env), as `cutline run` sends them: nothing it was told is
    dropped on the way to the host that runs the shoot."""
    given = settings.model_fields_set
    values = settings.model_dump(mode="json")
    options: dict[str, Any] = {
        name: values[name]
        for name in RUN_OPTION_FIELDS
        if name in given and name not in {"rules_file", "presets_file", "output_root"}
    }
    if "rules_file" in given:
        options["rules"] = rules_text(load_rules(settings.rules_file))
    if "presets_file" in given:
        options["presets"] = presets_text(load_presets(settings.presets_file))
    expected = {name: values[name] for name in host_fields() if name in given}
    return RunOptions(**options, host_settings=expected or None)


def _normal(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def refuse_other_host_settings(expected: dict[str, Any], host: CutlineSettings) -> None:
    """Refuse a run whose submitter set host settings this host does not have, naming each
    one, both values and where to change them. Nothing has been read or written yet."""
    unknown = sorted(set(expected) - set(host_fields()))
    if unknown:
        raise ConfigError(
            "The run asks for host settings that are not host settings: "
            + ", ".join(env_name(name) for name in unknown)
            + ".",
            hint="Give run options as the run's parameters; credentials stay on each host.",
        )
    values = host.model_dump(mode="json")
    differ = [name for name, value in expected.items() if _normal(values[name]) != _normal(value)]
    if not differ:
        return
    where = f"{socket.gethostname()} (process {os.getpid()})"
    lines = "; ".join(
        f"{env_name(name)}={_shown(expected[name])} where the run was submitted, "
        f"{_shown(values[name])} on the host running it"
        for name in differ
    )
    raise ConfigError(
        f"This run was submitted with host settings that the host running it, {where}, does "
        f"not have: {lines}. A run never changes its host's policy, so it did not start "
        "(nothing was read or written).",
        hint="Set them where runs execute (the stack: `cutline down`, then `cutline up` with "
        "them in the environment or .env; a worker: its environment) or unset them in the "
        "shell that runs `cutline run`.",
    )


def _shown(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value or '""'
