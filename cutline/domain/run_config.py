"""A shoot's settings, frozen once when its run starts.

The shoot flow reads the settings of the process it runs in (an entry point) and freezes what
shapes the results into a `RunConfig` carried by the shoot context. Every stage task, a batch
flow on another worker and a review run long after read this snapshot, never their own
environment, so a second machine or a changed environment cannot give one shoot two models,
two sizes or two DAMs.

Credentials are the one exception: they are never frozen into a run (the context is stored
with the run's parameters), so the process that talks to S3 or the DAM uses its own.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cutline.base.code_version import code_version
from cutline.base.settings import BatchOrder, CutlineSettings
from rules.engine import RuleSet, load_rules
from rules.presets import PresetBook, load_presets, presets_fingerprint


@lru_cache(maxsize=16)
def _rule_set(rules_json: str) -> RuleSet:
    """Validated rules of a config, once per process per rules (every image routes by them)."""
    return RuleSet.model_validate(json.loads(rules_json)["rules"])


# Non-secret DAM settings the snapshot fixes for the whole shoot (the token is not one).
DAM_FIELDS = (
    "dam_adapter",
    "catalog_dir",
    "object_catalog_root",
    "dam_http_base_url",
    "dam_http_mapping_file",
    "dam_http_auth_header",
    "dam_http_auth_scheme",
    "dam_http_timeout",
    "dam_http_max_retries",
    "dam_http_max_backoff",
)


_PATH_FIELDS = {"catalog_dir", "dam_http_mapping_file"}


class RunConfig(BaseModel):
    """What a shoot runs with; see the module docstring."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    model: str = Field(description="Model name or ONNX path.")
    model_home: str = Field(
        description="Where the starting host keeps the model's weights (for people): every "
        "host loads the run's model (by name, md5-checked) from its own model home."
    )
    model_input_max_side: int = Field(description="Long side of the decode the model sees.")
    confidence_second_view: bool = Field(description="Whether the second, padded view runs.")
    onnx_threads: int = Field(
        description="onnxruntime intra-op threads (0: the cores shared by the workers)."
    )
    onnx_providers: list[str] = Field(description="onnxruntime execution providers, in order.")
    max_pixels: int = Field(description="Largest image (pixels) decoded.")
    png_compress_level: int = Field(description="zlib level of the PNGs written.")
    sku_pattern: str = Field(description="SKU from a file name when the manifest has none.")
    manifest_date_order: str = Field(default="", description="Order of numeric manifest dates.")
    batch_size: int = Field(description="Images per stage task.")
    workers: int = Field(description="Stage tasks in flight within the shoot run.")
    batch_order: BatchOrder = Field(description="How batches go through the stages.")
    stage_retry_delays: list[float] = Field(description="Retry delays of a stage per batch.")
    rules_file: str = Field(
        description="Where the rules came from (a file on the starting host, or the run's "
        "parameters); only for people: the rules themselves are in `rules`."
    )
    rules_fingerprint: str = Field(description="The rules' version and content hash.")
    rules: dict[str, object] = Field(
        default_factory=dict,
        description="The routing rules themselves, fragments merged in: every task and worker "
        "routes by these, never by a file at `rules_file` on its own host. Empty only in "
        "configs written before rules travelled with the run.",
    )
    presets_file: str = Field(description="Where the channel presets came from (for people).")
    presets_fingerprint: str = Field(description="Content hash of the channel presets.")
    presets: dict[str, object] = Field(
        default_factory=dict,
        description="The channel presets themselves (empty only in older configs).",
    )
    review_deployment: str = Field(description="Deployment each review-lane image starts.")
    code_version: str = Field(
        default="",
        description="The Cutline code of the host that started the shoot (release and source "
        "hash, `cutline.base.code_version`): a batch on a host running other code is refused. "
        "Empty only in configs written before it was recorded.",
    )
    dam: dict[str, object] = Field(
        description="The non-secret DAM settings (adapter, catalog, endpoint, retries)."
    )

    @classmethod
    def freeze(
        cls,
        settings: CutlineSettings,
        rules: RuleSet | None = None,
        presets: PresetBook | None = None,
        *,
        rules_source: str = "",
        presets_source: str = "",
    ) -> RunConfig:
        """The snapshot of ``settings`` a shoot runs with, carrying its rules and presets by
        content (those given, else the files the settings name)."""
        rules = rules or load_rules(settings.rules_file)
        presets = presets or load_presets(settings.presets_file)
        return cls(
            model=settings.model,
            model_home=str(settings.resolved_model_home),
            model_input_max_side=settings.model_input_max_side,
            confidence_second_view=settings.confidence_second_view,
            onnx_threads=settings.onnx_threads,
            onnx_providers=list(settings.onnx_providers),
            max_pixels=settings.max_pixels,
            png_compress_level=settings.png_compress_level,
            sku_pattern=settings.sku_pattern,
            manifest_date_order=settings.manifest_date_order,
            batch_size=settings.batch_size,
            workers=settings.workers,
            batch_order=settings.batch_order,
            stage_retry_delays=list(settings.stage_retry_delays),
            rules_file=rules_source or str(settings.rules_file),
            rules_fingerprint=rules.fingerprint,
            rules=rules.model_dump(mode="json"),
            presets_file=presets_source or str(settings.presets_file),
            presets_fingerprint=presets_fingerprint(presets),
            presets=presets.model_dump(mode="json"),
            review_deployment=settings.review_deployment,
            code_version=code_version(),
            dam={
                **{
                    name: (str(value) if isinstance(value, Path) else value)
                    for name in DAM_FIELDS
                    if (value := getattr(settings, name)) is not None
                },
                "catalog_dir": str(settings.resolved_catalog_dir),
            },
        )

    def rule_set(self) -> RuleSet:
        """The shoot's routing rules (from the file at ``rules_file`` only for a config
        written before rules travelled with the run)."""
        if not self.rules:
            return load_rules(Path(self.rules_file))
        return _rule_set(self.model_dump_json(include={"rules"}))

    def preset_book(self) -> PresetBook:
        """The shoot's channel presets (from ``presets_file`` only for an older config)."""
        if not self.presets:
            return load_presets(Path(self.presets_file))
        return PresetBook.model_validate(self.presets)

    def inference_threads(self) -> int:
        """onnxruntime intra-op threads for this process's model session: the setting when
        given, else this machine's cores shared by the batches that run the model at once in
        it (`workers`), so their thread pools do not fight over the same cores (two batches
        each with a spinning two-thread pool on two cores ran 15% slower than one thread each).
        """
        if self.onnx_threads:
            return self.onnx_threads
        return max(1, len(os.sched_getaffinity(0)) // self.workers)

    def dam_settings(self, local: CutlineSettings) -> CutlineSettings:
        """This process's settings (for its credentials) with the shoot's DAM settings."""
        update = {k: Path(v) if k in _PATH_FIELDS else v for k, v in self.dam.items()}
        return local.model_copy(update=update)
