"""Routing rules: which lane, which rule fired and why, and clear errors for bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cutline.base.errors import ConfigError
from cutline.base.settings import DEFAULT_PRESETS_FILE, DEFAULT_RULES_FILE
from rules import Lane, RoutingInput, load_presets, load_rules, route

RULES = load_rules(DEFAULT_RULES_FILE)
# The threshold the shipped rules use (the calibration fragment's), read, never copied.
THRESHOLD = RULES.confidence.review_below


@pytest.mark.parametrize(
    ("category", "campaign", "confidence", "lane", "fired"),
    [
        # A clean, confident product with no special category publishes automatically.
        ("footwear", "SS27", 0.95, Lane.AUTO, ["auto"]),
        # Glassware never auto-publishes, however confident the model is.
        ("glassware", "", 0.99, Lane.REVIEW, ["category:glassware"]),
        # Manifest spellings are folded: 'Jewelry' is the jewellery category.
        ("Jewelry", "", 0.99, Lane.REVIEW, ["category:jewellery"]),
        # 'hair_beauty' with an underscore is still hair-detail beauty.
        ("hair_beauty", "", 0.99, Lane.REVIEW, ["category:hair-beauty"]),
        # Low confidence alone sends an ordinary product to review.
        ("homeware", "", THRESHOLD / 2, Lane.REVIEW, ["confidence"]),
        # Exactly at the (calibrated) threshold is good enough (below means strictly below).
        ("homeware", "", THRESHOLD, Lane.AUTO, ["auto"]),
        ("homeware", "", THRESHOLD - 0.0001, Lane.REVIEW, ["confidence"]),
        # A high-value campaign is reviewed regardless of score (case-insensitive name).
        ("footwear", "HERO", 0.99, Lane.REVIEW, ["campaign:hero"]),
        # Every reason is recorded, not just the first: glass, hero campaign and low score.
        ("glass", "hero", 0.10, Lane.REVIEW, ["category:glassware", "campaign:hero", "confidence"]),
    ],
)
def test_route_lanes_and_fired_rules(category, campaign, confidence, lane, fired):
    decision = route(
        RULES, RoutingInput(category=category, campaign=campaign, confidence=confidence)
    )
    assert decision.lane == lane
    assert [hit.rule for hit in decision.hits] == fired
    assert all(hit.reason for hit in decision.hits)


def test_senior_queue_wins_when_several_rules_fire():
    decision = route(RULES, RoutingInput(category="glassware", campaign="hero", confidence=0.1))
    assert decision.queue == "senior"
    assert decision.priority < RULES.priority("standard")
    assert "Glassware" in decision.reasons and "0.10" in decision.reasons


@pytest.mark.parametrize(
    ("text", "names"),
    [
        # A typo in a key must not be silently ignored.
        ("version: '1'\nconfidence: {review_belwo: 0.5}\n", "confidence.review_belwo"),
        # Thresholds are in [0, 1].
        ("version: '1'\nconfidence: {review_below: 7}\n", "confidence.review_below"),
        # An alias must point at a configured category.
        (
            "version: '1'\nconfidence: {review_below: 0.5}\ncategory_aliases: {glass: glasware}\n",
            "category_aliases.glass",
        ),
        # The version is required (reruns key on it).
        ("confidence: {review_below: 0.5}\n", "version"),
    ],
)
def test_bad_rules_file_names_the_key(tmp_path: Path, text: str, names: str):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert names in str(info.value)
    assert str(path) in str(info.value)


def test_rules_fingerprint_changes_with_content(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(DEFAULT_RULES_FILE.read_text())
    with pytest.raises(ConfigError, match="copy the fragment next to your copy"):
        load_rules(path)  # the copy needs its calibration/ folder too
    shutil.copytree(DEFAULT_RULES_FILE.parent / "calibration", tmp_path / "calibration")
    before = load_rules(path).fingerprint
    path.write_text(DEFAULT_RULES_FILE.read_text().replace("senior: 1", "senior: 0"))
    assert load_rules(path).fingerprint != before


def test_presets_resolve_defaults_and_reject_unknown_channels():
    book = load_presets(DEFAULT_PRESETS_FILE)
    assert book.resolve([]) == book.default_channels
    assert book.resolve(["web", "web", "social"]) == ["web", "social"]
    with pytest.raises(KeyError) as info:
        book.resolve(["tiktok"])
    assert "tiktok" in info.value.args[0] and "marketplace" in info.value.args[0]


def test_bad_preset_names_the_key(tmp_path: Path):
    path = tmp_path / "presets.yaml"
    path.write_text(
        "default_channels: [web]\npresets:\n  web: {size: [2000, 2000], background: white}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_presets(path)
    assert "presets.web.background" in str(info.value)


def test_an_included_fragment_sets_the_threshold_and_changes_the_fingerprint(tmp_path: Path):
    main = tmp_path / "rules.yaml"
    main.write_text(
        'version: "v1"\ninclude: [calibration/threshold.yaml]\nconfidence: {review_below: 0.5}\n'
    )
    fragment = tmp_path / "calibration" / "threshold.yaml"
    fragment.parent.mkdir()
    fragment.write_text(
        "confidence:\n  review_below: 0.8\n  calibration: {model: u2netp, images: 22}\n"
    )
    rules = load_rules(main)
    assert rules.confidence.review_below == 0.8
    assert rules.confidence.calibration == {"model": "u2netp", "images": 22}
    assert route(rules, RoutingInput(confidence=0.7)).lane == Lane.REVIEW
    before = rules.fingerprint
    fragment.write_text("confidence: {review_below: 0.6}\n")
    assert load_rules(main).fingerprint != before  # reruns re-route after a new calibration


def test_a_fragment_may_not_carry_its_own_version_or_includes(tmp_path: Path):
    main = tmp_path / "rules.yaml"
    main.write_text('version: "v1"\ninclude: [frag.yaml]\nconfidence: {review_below: 0.5}\n')
    (tmp_path / "frag.yaml").write_text('version: "sneaky"\n')
    with pytest.raises(ConfigError, match="without its own 'include' or 'version'"):
        load_rules(main)
    (tmp_path / "frag.yaml").unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        load_rules(main)


def test_edge_refinement_is_chosen_per_category(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        'version: "r"\nconfidence: {review_below: 0.5}\n'
        "review_categories: {hair-beauty: {reason: Hair.}}\ncategory_aliases: {hair: hair-beauty}\n"
        "edge_refinement: {method: guided-filter, categories: [hair]}\n"
    )
    rules = load_rules(path)
    assert rules.refinement_for("Hair-Beauty") == "guided-filter"
    assert rules.refinement_for("footwear") == ""
    assert RULES.refinement_for("hair-beauty") == ""  # off unless a studio switches it on


def test_the_model_is_chosen_per_category_by_name_or_alias(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        'version: "r"\nconfidence: {review_below: 0.5}\n'
        "review_categories: {hair-beauty: {reason: Hair.}}\ncategory_aliases: {hair: hair-beauty}\n"
        "models: {by_category: {hair: modnet, Plush_Toys: modnet, bags: u2net}}\n"
    )
    rules = load_rules(path)
    assert rules.model_for("Hair-Beauty", "u2netp") == "modnet"  # through the alias
    assert rules.model_for("plush toys", "u2netp") == "modnet"
    assert rules.model_for("footwear", "u2netp") == "u2netp"  # the run's model elsewhere
    assert rules.models_named() == ["modnet", "u2net"]
    assert RULES.model_for("hair-beauty", "u2netp") == "u2netp"  # none unless a studio chooses
    path.write_text(
        'version: "r"\nconfidence: {review_below: 0.5}\nmodels: {by_category: {x: ""}}\n'
    )
    with pytest.raises(ConfigError, match=r"by_category"):
        load_rules(path)


def test_a_fallback_model_is_a_second_opinion_for_any_other_model(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        'version: "r"\nconfidence: {review_below: 0.5}\n'
        "models: {by_category: {hair: u2net}, fallback: {model: modnet, below: 0.4}}\n"
    )
    rules = load_rules(path)
    assert rules.fallback_for("u2netp").model == "modnet"
    assert rules.fallback_for("u2netp").below == 0.4
    assert rules.fallback_for("modnet") is None  # a model is no second opinion on itself
    assert rules.models_named() == ["modnet", "u2net"]  # both provisioned and checked
    path.write_text(
        'version: "r"\nconfidence: {review_below: 0.5}\n'
        "models: {fallback: {model: modnet, below: 2}}\n"
    )
    with pytest.raises(ConfigError, match=r"below"):
        load_rules(path)


def test_a_category_with_its_own_calibrated_threshold_is_routed_on_it(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        'version: "r"\nconfidence:\n  review_below: 0.8\n'
        "  by_category: {Plush_Toys: 0.9, footwear: 0.6}\n"
    )
    rules = load_rules(path)
    plush = route(rules, RoutingInput(category="plush toys", confidence=0.85))
    assert plush.lane == Lane.REVIEW and [h.rule for h in plush.hits] == ["confidence:plush-toys"]
    assert "below 0.90 for plush-toys" in plush.reasons
    shoe = route(rules, RoutingInput(category="Footwear", confidence=0.7))
    assert shoe.lane == Lane.AUTO and "0.60 for footwear" in shoe.reasons
    other = route(rules, RoutingInput(category="homeware", confidence=0.7))
    assert [h.rule for h in other.hits] == ["confidence"]  # the general threshold
    path.write_text('version: "r"\nconfidence: {review_below: 0.8, by_category: {x: 1.5}}\n')
    with pytest.raises(ConfigError, match=r"by_category"):
        load_rules(path)
