"""Reference rows of the demo world: how well can a song's attributes predict its factors?

The world knows what its listeners' taste is made of (coldtune.world.listeners): a
few attributes audio can reveal, written for each song in the world's `tracks.csv`,
and hidden ones it cannot (artist loyalty, a hidden appeal, popularity). A content
model sees the audio, never these records; the best it could do from the audible part
of taste is about what a regression from the attributes themselves achieves. So:

    audible ceiling : ridge regression from the one-hot AUDIBLE attributes of each warm
                      song to its WMF factors, applied to the cold songs' attributes
    timbre ceiling  : the same from TIMBRE (style and instrument family) only: about
                      what a bag of frames, blind to rhythm, tempo, mode and register,
                      can at best see

These are evaluation references for the demo world only, computed from its records,
never from audio; no model trains on them. `ceiling_factors` is the one way to get
them. The one-hot columns and the ridge penalty are chosen on the warm songs alone
(the penalty by leave-one-out cross-validation): a value only cold songs have gets no
column, as a model would know nothing of it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv

from coldtune.errors import ParameterError, WorkspaceError

AUDIBLE: tuple[str, ...] = (
    "style",
    "family",
    "tune_type",
    "meter_class",
    "tempo_class",
    "mode",
    "register",
)
"""Every attribute of tracks.csv that listeners' taste rests on and audio can reveal."""

TIMBRE: tuple[str, ...] = ("style", "family")
"""What a bag of frames can at best see: the style and the instrument family."""

ALPHAS = np.logspace(-3, 4, 15)  # ridge penalties tried, by leave-one-out CV


def ceiling_factors(
    world_dir: str | os.PathLike,
    *,
    warm_ids: Sequence[str],
    warm_factors: np.ndarray,
    cold_ids: Sequence[str],
    attributes: Sequence[str] = AUDIBLE,
) -> np.ndarray:
    """Cold songs' factors predicted from their attributes in `world_dir`/tracks.csv.

    warm_ids : song ids [shape=(n_warm,)], the rows of `warm_factors`.
    warm_factors : [shape=(n_warm, k)] the warm songs' WMF factors.
    cold_ids : song ids [shape=(n_cold,)] whose factors are wanted.
    attributes : columns of tracks.csv to one-hot encode: AUDIBLE, TIMBRE or any subset.
    Returns float32 [shape=(n_cold, k)], rows in the order of `cold_ids`.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import OneHotEncoder

    warm_factors = np.asarray(warm_factors, dtype=np.float64)
    if warm_factors.ndim != 2 or warm_factors.shape[0] != len(warm_ids):
        raise ParameterError(
            f"warm_factors must be (n_warm, k) with n_warm = {len(warm_ids)} warm ids, "
            f"got shape {warm_factors.shape}"
        )
    if len(warm_ids) < 2:
        raise ParameterError(f"need at least 2 warm songs to fit a ridge, got {len(warm_ids)}")
    if not attributes:
        raise ParameterError("name at least one attribute (e.g. coldtune.world.ceiling.AUDIBLE)")
    records = _read_attributes(Path(world_dir), list(attributes))
    warm = _rows(records, warm_ids, world_dir)
    cold = _rows(records, cold_ids, world_dir)
    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)
    X_warm = encoder.fit_transform(warm)  # columns: values seen on warm songs only
    X_cold = encoder.transform(cold)  # a value unseen on warm songs: all zeros
    ridge = RidgeCV(alphas=ALPHAS, fit_intercept=True).fit(X_warm, warm_factors)
    return ridge.predict(X_cold).astype(np.float32)


def _read_attributes(world_dir: Path, attributes: list[str]) -> dict[str, np.ndarray]:
    path = world_dir / "tracks.csv"
    if not path.exists():
        raise WorkspaceError(
            f"{path} not found: the ceilings need a demo world's records "
            "(coldtune world build --out DIR)"
        )
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    missing = [name for name in ["song_id", *attributes] if name not in table.column_names]
    if missing:
        raise WorkspaceError(
            f"{path} has no column {', '.join(missing)}: a world made by an older builder; "
            "build it again"
        )
    return {name: np.array(table[name].cast("string").to_pylist(), dtype=object)
            for name in ["song_id", *attributes]}  # fmt: skip


def _rows(records: dict[str, np.ndarray], song_ids: Sequence[str], world_dir) -> np.ndarray:
    """[shape=(len(song_ids), n_attributes)] attribute values of those songs, as str."""
    index = {song: i for i, song in enumerate(records["song_id"])}
    missing = [song for song in song_ids if song not in index]
    if missing:
        raise ParameterError(
            f"{len(missing)} songs are not in {world_dir}/tracks.csv (e.g. {missing[0]!r}): "
            "the ceilings need the world the plays came from"
        )
    rows = np.array([index[song] for song in song_ids], dtype=np.int64)
    columns = [name for name in records if name != "song_id"]
    return np.stack([records[name][rows] for name in columns], axis=1)
