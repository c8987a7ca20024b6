"""`coldtune plays ingest` and `coldtune split`: play counts into W/plays/, then the
cold-start split of section 5.2 into W/split.json."""

from __future__ import annotations

from pathlib import Path

from coldtune.data.plays import Interactions, load_interactions, read_plays, save_interactions
from coldtune.data.splits import (
    SPLIT_PRESETS,
    ColdStartSplit,
    SplitConfig,
    save_split,
    split_songs,
)
from coldtune.errors import ParameterError
from coldtune.workspace import Workspace


def ingest(path: str | Path, workspace: Workspace, **read_options) -> Interactions:
    """Read play counts (format detected from the file unless `format=` is given; see
    `coldtune.data.plays.read_plays`) and store them in W/plays/."""
    interactions = read_plays(path, **read_options)
    save_interactions(interactions, workspace)
    return interactions


def split_config(preset: str | None = None, **changes) -> SplitConfig:
    """A preset's split settings (SPLIT_PRESETS) with `changes`, or the defaults'."""
    if preset is not None and preset not in SPLIT_PRESETS:
        raise ParameterError(f"preset must be one of {', '.join(SPLIT_PRESETS)}, got {preset!r}")
    base = SPLIT_PRESETS[preset] if preset is not None else SplitConfig()
    return base.replace(**changes) if changes else base


def split(workspace: Workspace, config: SplitConfig) -> ColdStartSplit:
    """Choose users, warm and cold songs; write W/split.json."""
    interactions = load_interactions(workspace)
    result = split_songs(interactions, config)
    save_split(result, interactions, workspace)
    return result
