"""What every content model shares: its training set, its input, its files.

A content model is an estimator (scikit-learn's contract): `__init__(config)` stores
the frozen config untouched, `fit(training_set)` validates it and learns from the warm
songs only, returning self, `predict(songs)` turns songs' features into factors, and
`save(folder)` / `load(folder)` keep it: arrays in `weights.safetensors`, settings in
`config.json`, anything else learned in `state.json`. Loading never runs pickle.

The input of `predict` is one mapping per song with the features the model reads:
`"mfcc"` (frames x 3 n_mfcc), `"mel"` (frames x n_mels) or `"tags"` ({tag: weight}).
A clip nobody has heard gives one with `coldtune.audio.store.extract_clip`; the songs
of a feature store give them lazily through `StoredSong`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from coldtune.errors import WorkspaceError
from coldtune.workspace import atomic_path, fingerprint, write_json

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
STATE = "state.json"

SongFeatures = Mapping[str, Any]


class FeatureSource(Protocol):
    """What training reads audio from: a FeatureStore, or anything shaped like one."""

    def song(self, song_id: str, kind: str = "mel") -> np.ndarray: ...

    def width(self, kind: str = "mel") -> int: ...

    def random_windows(self, song_ids, *, frames: int, rng) -> np.ndarray: ...


class StoredSong(Mapping):
    """One song's features, read from a feature store when asked for (and its tags)."""

    def __init__(self, store: FeatureSource | None, song_id: str, tags: dict | None = None):
        self.store, self.song_id, self.tags = store, song_id, tags

    def __getitem__(self, kind: str):
        if kind == "tags":
            return self.tags or {}
        if self.store is None:
            raise KeyError(kind)
        return self.store.song(self.song_id, kind)

    def __iter__(self) -> Iterator[str]:
        return iter(("mel", "mfcc", "tags"))

    def __len__(self) -> int:
        return 3


def stored_songs(store, song_ids, tags: dict | None = None) -> list[StoredSong]:
    tags = tags or {}
    return [StoredSong(store, str(song), tags.get(str(song))) for song in song_ids]


@dataclass
class TrainingSet:
    """What a content model learns from: the warm songs only.

    song_ids : the warm songs with features [shape=(n,)].
    factors : their WMF song factors [shape=(n, factors)], the targets.
    user_factors : WMF's X [shape=(n_users, factors)], for the WPE objective (eq. 5).
    confidence : c_ui of eq. (2) for these songs [shape=(n_users, n)], training plays only.
    features : where their audio features are (None for a tags-only model).
    tags : song id -> {tag: weight}, for the metadata model.
    bow : a fitted BagOfWords and these songs' word frequencies, when already computed
        (the shared cache of steps.train); a BoW model fits its own otherwise.
    checkpoint : file a torch model writes after every epoch, to resume from.
    """

    song_ids: np.ndarray
    factors: np.ndarray
    user_factors: np.ndarray | None = None
    confidence: sp.csr_matrix | None = None
    features: FeatureSource | None = None
    tags: dict | None = None
    bow: tuple | None = None
    checkpoint: Path | None = None

    def __post_init__(self):
        self.song_ids = np.asarray(self.song_ids)
        if len(self.song_ids) != len(self.factors):
            raise WorkspaceError(
                f"{len(self.song_ids)} songs but {len(self.factors)} rows of factors"
            )
        if len(self.song_ids) < 2:
            raise WorkspaceError("fewer than 2 warm songs have features; nothing to learn from")

    def songs(self) -> list[StoredSong]:
        return stored_songs(self.features, self.song_ids, self.tags)

    def fingerprint(self) -> str:
        """workspace.fingerprint of the songs and their target factors: a checkpoint of
        other data is not resumed."""
        return fingerprint(arrays=(self.song_ids, self.factors))


def save_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to folder/weights.safetensors, atomically."""
    from safetensors.numpy import save_file

    with atomic_path(Path(folder) / WEIGHTS) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))


def load_arrays(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = Path(folder) / WEIGHTS
    if not path.exists():
        raise WorkspaceError(f"{path}: no weights; train the model again")
    return load_file(str(path))


def save_model(folder: Path, name: str, config, arrays: dict, state: dict | None = None):
    """A model's three files: weights, config.json ({"model", "config"}), state.json."""
    folder = Path(folder)
    save_arrays(folder, arrays)
    if state is not None:
        write_json(folder / STATE, state)
    write_json(folder / CONFIG, {"model": name, "config": config.to_dict()})


def read_model_files(folder: Path, config_class) -> tuple[Any, dict, dict]:
    """(config, arrays, state) of a saved model."""
    folder = Path(folder)
    path = folder / CONFIG
    if not path.exists():
        raise WorkspaceError(f"{path}: no model config; train the model again")
    saved = json.loads(path.read_text())
    config = config_class.from_dict(saved["config"])
    state = json.loads((folder / STATE).read_text()) if (folder / STATE).exists() else {}
    return config, load_arrays(folder), state


def frames_of(songs: Sequence[SongFeatures], kind: str) -> list[np.ndarray]:
    """Each song's frames of `kind`, with a message naming the song that lacks them."""
    out = []
    for i, song in enumerate(songs):
        try:
            out.append(song[kind])
        except KeyError:
            raise WorkspaceError(
                f"song {i} has no {kind!r} features; extract its clip first"
            ) from None
    return out


def unit_rows(Y: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero): the unit-norm factor
    targets of Dieleman 2014, which keep a song's direction in the factor space and drop
    its length, the part of WMF's factors that follows how much it was played."""
    return Y / np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), 1e-8)
