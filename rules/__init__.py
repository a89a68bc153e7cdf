"""Routing rules and channel presets kept as data files a studio edits (YAML in this folder)."""

from rules.engine import (
    Lane,
    RouteDecision,
    RoutingInput,
    RuleHit,
    RuleSet,
    load_rules,
    route,
)
from rules.presets import ChannelPreset, PresetBook, load_presets

__all__ = [
    "ChannelPreset",
    "Lane",
    "PresetBook",
    "RouteDecision",
    "RoutingInput",
    "RuleHit",
    "RuleSet",
    "load_presets",
    "load_rules",
    "route",
]
