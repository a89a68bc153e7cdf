"""Route each cutout to a lane by rules kept as data, recording which rules fired and why."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cutline.base.errors import ConfigError
from cutline.base.yamlfile import load_yaml, validate_model


class Lane(StrEnum):
    """Where an image ends: published without a person, waiting for one, or not processed."""

    AUTO = "auto"
    REVIEW = "review"
    FAILED = "failed"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfidenceRule(_Strict):
    review_below: float = Field(
        ge=0, le=1, description="Cutouts whose confidence is below this go to review."
    )
    by_category: dict[str, float] = Field(
        default_factory=dict,
        description="Thresholds of their own for categories (names as in the manifest or "
        "aliases) whose images proved one in `cutline eval`; other categories use "
        "review_below.",
    )
    calibration: dict[str, str | float | int | bool | None] | None = Field(
        default=None,
        description="Where the threshold came from (written by `cutline eval`): model, "
        "confidence version, target and measured precision with its lower bound, images, date.",
    )

    @field_validator("by_category")
    @classmethod
    def _thresholds_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"thresholds must be in [0, 1]; got {bad}")
        return value


class CategoryRule(_Strict):
    queue: str = Field(default="senior", description="Review queue the images go to.")
    reason: str = Field(description="Why, in words a retoucher understands.")


class CampaignRule(_Strict):
    name: str = Field(min_length=1, description="Campaign name as written in the manifest.")
    reason: str = Field(description="Why, in words a retoucher understands.")
    queue: str = Field(default="standard", description="Review queue the images go to.")


class EdgeRefinement(_Strict):
    method: Literal["guided-filter"] = Field(
        default="guided-filter", description="How the AI mask's edge band is refined."
    )
    categories: list[str] = Field(
        default_factory=list,
        description="Categories (or aliases) whose masks are refined; `cutline eval` shows "
        "the effect per category and the cost.",
    )


class EdgeDecontamination(_Strict):
    categories: list[str] = Field(
        default_factory=list,
        description="Categories (or aliases) whose PNG, PSD cutout layer and JPGs get the "
        "subject's own colours in the mask's soft edge instead of the photo's mix with the "
        "backdrop (pymatting's foreground estimation); `cutline eval` measures the edge colour "
        "error where the reference set has true foreground colours.",
    )


class ModelFallback(_Strict):
    model: str = Field(
        min_length=1,
        description="The second model (rembg name or ONNX path) that cuts an image out again "
        "when the first cutout's confidence is below `below`; the cutout with the higher "
        "confidence is kept and the ledger's `model` column names it.",
    )
    below: float = Field(
        ge=0.0,
        le=1.01,
        description="Confidence under which the second model runs (`cutline eval` writes the "
        "first model's review threshold: only cutouts that would go to review pay for it).",
    )


class ModelChoice(_Strict):
    fallback: ModelFallback | None = Field(
        default=None,
        description="Optional second opinion for doubtful cutouts (see ModelFallback): a model "
        "chosen by the image's own cutout, not by its category.",
    )
    by_category: dict[str, str] = Field(
        default_factory=dict,
        description="The model (rembg name, e.g. modnet, or ONNX path) whose masks the images "
        "of a category (or alias) get; other categories use the run's model (--model or "
        "CUTLINE_MODEL). `cutline eval` with several models writes the categories where one "
        "measured better.",
    )
    evidence: dict[str, dict[str, float | int | str]] | None = Field(
        default=None,
        description="Why (written by `cutline eval`): per category, each model's mean IoU on "
        "how many reference images.",
    )

    @field_validator("by_category")
    @classmethod
    def _names_given(cls, value: dict[str, str]) -> dict[str, str]:
        empty = [category for category, model in value.items() if not str(model).strip()]
        if empty:
            raise ValueError(f"no model named for {empty}")
        return value


class RuleSet(_Strict):
    """A validated rules file."""

    version: str = Field(
        min_length=1, description="Bump on every change; reruns re-route when it changes."
    )
    include: list[str] = Field(
        default_factory=list,
        description="Rules fragments (paths relative to this file) merged over it, in order; "
        "e.g. the confidence threshold `cutline eval` recommends.",
    )
    confidence: ConfidenceRule
    review_categories: dict[str, CategoryRule] = Field(default_factory=dict)
    category_aliases: dict[str, str] = Field(default_factory=dict)
    review_campaigns: list[CampaignRule] = Field(default_factory=list)
    queue_priority: dict[str, int] = Field(default_factory=lambda: {"senior": 1, "standard": 2})
    edge_refinement: EdgeRefinement | None = Field(
        default=None, description="Optional edge refinement of the AI mask, per category."
    )
    edge_decontamination: EdgeDecontamination | None = Field(
        default=None, description="Optional colour decontamination of soft edges, per category."
    )
    models: ModelChoice | None = Field(
        default=None, description="Optional model per category (see ModelChoice)."
    )
    fingerprint: str = Field(default="", description="Hash of the file's content (set on load).")

    @model_validator(mode="after")
    def _aliases_point_to_categories(self) -> RuleSet:
        for alias, target in self.category_aliases.items():
            if target not in self.review_categories:
                known = ", ".join(sorted(self.review_categories)) or "(none)"
                raise ValueError(
                    f"category_aliases.{alias} points to '{target}', which is not in review_categories ({known})"
                )
        return self

    def canonical_category(self, category: str) -> str:
        """The category name rules use for a manifest spelling (case and alias folded)."""
        key = category.strip().lower().replace("_", "-").replace(" ", "-")
        return self.category_aliases.get(key, key)

    def refinement_for(self, category: str) -> str:
        """The edge refinement the rules ask for this category ('' for none)."""
        refine = self.edge_refinement
        if refine is None:
            return ""
        wanted = {self.canonical_category(c) for c in refine.categories}
        return refine.method if self.canonical_category(category) in wanted else ""

    def decontaminates(self, category: str) -> bool:
        """Whether this category's renditions get decontaminated edge colours."""
        chosen = self.edge_decontamination
        if chosen is None:
            return False
        wanted = {self.canonical_category(c) for c in chosen.categories}
        return self.canonical_category(category) in wanted

    def model_for(self, category: str, default: str) -> str:
        """The model for this category's images: the rules' choice, else ``default``."""
        if self.models is None:
            return default
        chosen = {self.canonical_category(c): m for c, m in self.models.by_category.items()}
        return chosen.get(self.canonical_category(category), default)

    def fallback_for(self, model: str) -> ModelFallback | None:
        """The second opinion for doubtful cutouts of ``model`` (None where the rules name
        none, or name this very model)."""
        fallback = self.models.fallback if self.models else None
        return fallback if fallback is not None and fallback.model != model else None

    def models_named(self) -> list[str]:
        """Every model the rules choose for some category or as the fallback (to provision
        and check)."""
        if self.models is None:
            return []
        named = set(self.models.by_category.values())
        if self.models.fallback is not None:
            named.add(self.models.fallback.model)
        return sorted(named)

    def threshold_for(self, category: str) -> tuple[float, str]:
        """The confidence threshold for this category, and the category whose own threshold
        it is ('' when the general one applies)."""
        own = {self.canonical_category(c): t for c, t in self.confidence.by_category.items()}
        key = self.canonical_category(category)
        if key and key in own:
            return own[key], key
        return self.confidence.review_below, ""

    def priority(self, queue: str) -> int:
        """Sort key of a review queue (lower first); unknown queues go last."""
        return self.queue_priority.get(queue, max(self.queue_priority.values(), default=0) + 1)


class RuleHit(BaseModel):
    """One rule that fired: a stable id and the reason in plain words."""

    model_config = ConfigDict(frozen=True)

    rule: str
    reason: str


class RoutingInput(BaseModel):
    """What routing looks at for one image."""

    category: str = ""
    campaign: str = ""
    confidence: float = Field(ge=0, le=1)


class RouteDecision(BaseModel):
    """The lane chosen for an image, the rules that fired, and its review queue."""

    lane: Lane
    hits: list[RuleHit]
    queue: str = ""
    priority: int = 0

    @property
    def reasons(self) -> str:
        """The reasons as one line for ledgers and forms."""
        return " | ".join(h.reason for h in self.hits)


def _merged(base: dict, fragment: dict) -> dict:
    """``base`` with ``fragment``'s keys laid over it (nested mappings merged key by key)."""
    out = dict(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def load_rules(path: Path) -> RuleSet:
    """Load and validate a rules file and the fragments it includes; errors name the bad
    key. The fingerprint covers every file, so editing a fragment re-routes on rerun."""
    path = Path(path)
    raw = load_yaml(path, "Rules") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"Rules file {path} is not a mapping of rule names to rules.")
    merged = raw
    for name in raw.get("include") or []:
        fragment_path = (path.parent / str(name)).resolve()
        if not fragment_path.is_file():
            raise ConfigError(
                f"Rules fragment {fragment_path} (included by {path}) does not exist.",
                hint="Paths in 'include' are relative to the rules file: copy the fragment "
                "next to your copy of the rules (e.g. its calibration/ folder) or fix the path.",
            )
        fragment = load_yaml(fragment_path, "Rules fragment") or {}
        if not isinstance(fragment, dict) or "include" in fragment or "version" in fragment:
            raise ConfigError(
                f"Rules fragment {fragment_path} (included by {path}) must be a mapping "
                "without its own 'include' or 'version'.",
                hint="Keep the version in the main rules file; bump it when fragments change.",
            )
        merged = _merged(merged, fragment)
    return _fingerprinted(validate_model(merged, RuleSet, "Rules", path))


def _fingerprinted(rules: RuleSet) -> RuleSet:
    """``rules`` with its fingerprint: the version and a hash of the rules themselves (every
    fragment merged in), so rules read from a file and the same rules carried by a run as
    text have one fingerprint, and any change to a rule changes it."""
    digest = hashlib.sha256(rules_text(rules).encode("utf-8")).hexdigest()[:12]
    return rules.model_copy(update={"fingerprint": f"{rules.version}+{digest}"})


def rules_text(rules: RuleSet) -> str:
    """The rules as one YAML document, fragments merged in: what a run carries (see
    `rules_from_text`), so a worker routes by the rules the shoot started with, not by
    whatever file is at the same path on its host."""
    body = rules.model_dump(mode="json", exclude={"fingerprint", "include"})
    return yaml.safe_dump(body, sort_keys=True, allow_unicode=True)


def rules_from_text(text: str, source: str) -> RuleSet:
    """Rules given as YAML text (a run parameter), validated like a rules file; ``source``
    names where they came from in errors. Text cannot include fragments: `cutline run
    --rules FILE` sends the file with its fragments merged in."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Rules in {source} are not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Rules in {source} are not a mapping of rule names to rules.")
    if raw.get("include"):
        raise ConfigError(
            f"Rules in {source} name fragments to include ({', '.join(map(str, raw['include']))}); "
            "rules given as text must be complete.",
            hint="Pass the rules file to `cutline run --rules FILE` (it merges the fragments "
            "in), or paste the merged rules.",
        )
    return _fingerprinted(validate_model(raw, RuleSet, "Rules", Path(source)))


def route(rules: RuleSet, item: RoutingInput) -> RouteDecision:
    """Choose the lane for one successfully cut image.

    Every rule is evaluated so the decision lists all reasons, not just the first:
    a retoucher sees that a glass bottle both is glassware and scored low.
    """
    hits: list[RuleHit] = []
    queues: list[str] = []
    category = rules.canonical_category(item.category)
    if category in rules.review_categories:
        rule = rules.review_categories[category]
        hits.append(RuleHit(rule=f"category:{category}", reason=rule.reason))
        queues.append(rule.queue)
    for campaign in rules.review_campaigns:
        if item.campaign and item.campaign.strip().lower() == campaign.name.strip().lower():
            hits.append(RuleHit(rule=f"campaign:{campaign.name}", reason=campaign.reason))
            queues.append(campaign.queue)
    threshold, own = rules.threshold_for(item.category)
    whose = f" for {own}" if own else ""
    if item.confidence < threshold:
        hits.append(
            RuleHit(
                rule=f"confidence:{own}" if own else "confidence",
                reason=f"Low confidence {item.confidence:.2f} (below {threshold:.2f}{whose}): the AI mask may be wrong.",
            )
        )
        queues.append("standard")
    if not hits:
        return RouteDecision(
            lane=Lane.AUTO,
            hits=[
                RuleHit(
                    rule="auto",
                    reason=f"Confidence {item.confidence:.2f} at or above {threshold:.2f}{whose} and no review rule applies.",
                )
            ],
        )
    queue = min(queues, key=rules.priority)
    return RouteDecision(lane=Lane.REVIEW, hits=hits, queue=queue, priority=rules.priority(queue))
