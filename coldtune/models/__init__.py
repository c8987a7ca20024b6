"""Content models (section 4): audio features -> WMF song factors, registered by name.

Every model is trained on the warm songs only (their audio features and their WMF
factors) and predicts factors for the cold songs from their audio; the evaluation of
the foundation issue then scores those predictions. A trainer writes
W/models/<name>/predictions.npz (song_ids, factors), config.json and report.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from coldtune.errors import ParameterError, WorkspaceError
from coldtune.workspace import Workspace, atomic_path, write_json


@dataclass
class TrainingData:
    """What every content model learns from: warm songs' ids and factors, cold ids."""

    warm_ids: np.ndarray
    warm_factors: np.ndarray  # [shape=(n_warm, k)], WMF song factors
    cold_ids: np.ndarray


def training_data(workspace: Workspace) -> TrainingData:
    """Warm songs with audio and their factors; cold songs, which all need audio."""
    from coldtune.audio.store import FeatureStore
    from coldtune.data.plays import load_interactions
    from coldtune.data.splits import load_split
    from coldtune.pipeline import load_wmf

    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    model = load_wmf(workspace)
    store = FeatureStore(workspace.features_dir)
    warm_ids = interactions.song_ids[split.warm_songs]
    cold_ids = interactions.song_ids[split.cold_songs]
    has_audio = np.array([song in store for song in warm_ids], dtype=bool)
    missing_cold = [song for song in cold_ids if song not in store]
    if missing_cold:
        raise WorkspaceError(
            f"{len(missing_cold)} cold songs have no audio features (e.g. {missing_cold[0]!r}); "
            "extract their clips with `coldtune audio extract`, or make the split again "
            "with only songs that have clips"
        )
    if has_audio.sum() < 2:
        raise WorkspaceError("fewer than 2 warm songs have audio features; nothing to learn from")
    return TrainingData(warm_ids[has_audio], model.song_factors_[has_audio], cold_ids)


def _train_bow_linear(workspace: Workspace, **options) -> dict:
    from coldtune.audio.store import FeatureStore
    from coldtune.models.bow import BagOfWords, BowConfig, PCARidge

    config = BowConfig(**options).validate()
    data = training_data(workspace)
    store = FeatureStore(workspace.features_dir)
    warm = [store.song(song, "mfcc") for song in data.warm_ids]
    bag = BagOfWords(config).fit(warm)
    regression = PCARidge(config).fit(bag.transform(warm), data.warm_factors)
    cold = bag.transform([store.song(song, "mfcc") for song in data.cold_ids])
    predictions = regression.predict(cold)
    report = {
        "warm_songs": len(data.warm_ids),
        "cold_songs": len(data.cold_ids),
        "pca_components": int(regression.components_.shape[0]),
        "alpha": regression.alpha_,
        "validation_mse": regression.validation_mse_,
    }
    return {
        "config": config.to_dict(),
        "predictions": (data.cold_ids, predictions),
        "report": report,
    }


MODELS: dict[str, Callable[..., dict]] = {
    "bow-linear": _train_bow_linear,
}


def train(workspace: Workspace, name: str, **options) -> dict:
    """Train content model `name` and write its predictions for the cold songs."""
    if name not in MODELS:
        raise ParameterError(f"model must be one of {', '.join(MODELS)}, got {name!r}")
    start = time.perf_counter()
    result = MODELS[name](workspace, **options)
    folder = workspace.models_dir(name)
    song_ids, factors = result["predictions"]
    with atomic_path(folder / "predictions.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, song_ids=np.asarray(song_ids, dtype=str), factors=factors)
    write_json(folder / "config.json", result["config"])
    report = {**result["report"], "seconds": round(time.perf_counter() - start, 2)}
    write_json(folder / "report.json", report)
    return report
