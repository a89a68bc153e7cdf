"""Channel presets: how each flat JPG rendition is framed, sized and flattened."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cutline.base.errors import ConfigError
from cutline.base.yamlfile import load_model, validate_model

_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")


class ChannelPreset(BaseModel):
    """One channel's flat JPG: canvas size, background, framing and quality."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: tuple[int, int] = Field(description="Canvas [width, height] in pixels.")
    background: str = Field(default="#FFFFFF", description="Background colour as #RRGGBB.")
    square: bool = Field(default=True, description="Square canvas of width x width.")
    margin: float = Field(
        default=0.05,
        ge=0,
        lt=0.5,
        description="Clear space around the subject, as a fraction of the canvas.",
    )
    quality: int = Field(default=90, ge=1, le=100, description="JPEG quality.")

    @field_validator("size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 16 or max(value) > 20000:
            raise ValueError("each side must be between 16 and 20000 pixels")
        return value

    @field_validator("background")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX.match(value):
            raise ValueError(f"'{value}' is not a #RRGGBB colour")
        return value

    @property
    def canvas(self) -> tuple[int, int]:
        """The canvas size actually used."""
        return (self.size[0], self.size[0]) if self.square else self.size

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        """Background colour as an RGB tuple."""
        h = self.background.lstrip("#")
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))


class PresetBook(BaseModel):
    """All channel presets and the channels used when the manifest names none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_channels: list[str] = Field(min_length=1)
    presets: dict[str, ChannelPreset] = Field(min_length=1)

    @model_validator(mode="after")
    def _defaults_exist(self) -> PresetBook:
        missing = [c for c in self.default_channels if c not in self.presets]
        if missing:
            raise ValueError(f"default_channels names unknown presets: {', '.join(missing)}")
        return self

    def resolve(self, channels: tuple[str, ...] | list[str]) -> list[str]:
        """The channels an image gets; raises KeyError naming unknown ones and the known ones."""
        wanted = list(channels) or list(self.default_channels)
        unknown = [c for c in wanted if c not in self.presets]
        if unknown:
            raise KeyError(
                f"unknown channel preset(s) {', '.join(unknown)}; known: {', '.join(sorted(self.presets))}"
            )
        return list(dict.fromkeys(wanted))


def load_presets(path: Path) -> PresetBook:
    """Load and validate a channel presets file; errors name the bad key."""
    return load_model(Path(path), PresetBook, "Channel presets")


def presets_text(book: PresetBook) -> str:
    """The presets as one YAML document: what a run carries, so every worker renders the
    channels the shoot started with."""
    return yaml.safe_dump(book.model_dump(mode="json"), sort_keys=True, allow_unicode=True)


def presets_fingerprint(book: PresetBook) -> str:
    """Hash of the presets' content (not of a file's bytes: comments and layout do not count)."""
    return hashlib.sha256(presets_text(book).encode("utf-8")).hexdigest()[:16]


def presets_from_text(text: str, source: str) -> PresetBook:
    """Channel presets given as YAML text (a run parameter), validated like the file."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Channel presets in {source} are not valid YAML: {exc}") from None
    return validate_model(raw, PresetBook, "Channel presets", Path(source))
