"""`coldtune train MODEL`: fit a content model on the warm songs, predict the cold ones.

Reads the workspace's plays, split, WMF factors, feature store and tags; writes
W/models/<row>/: the model (weights.safetensors, config.json, state.json), its
predictions for the cold songs (predictions.npz: song_ids, factors, and user_factors for
a model that scores with users of its own), report.json and the training checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from coldtune import content
from coldtune.audio.store import FeatureStore
from coldtune.cf.algebra import confidence
from coldtune.content.base import TrainingSet, stored_songs
from coldtune.content.bow import BagOfWords
from coldtune.content.configs import BowConfig
from coldtune.content.distributed import current, finish, is_main_process
from coldtune.data.plays import load_interactions
from coldtune.data.splits import load_split
from coldtune.data.tags import read_song_tags
from coldtune.errors import WorkspaceError
from coldtune.steps.wmf import load_wmf
from coldtune.workspace import Workspace, atomic_path, fingerprint, write_json


@dataclass
class Songs:
    """The split's songs as training sees them, and where their features are."""

    training: TrainingSet  # warm songs with features
    cold_ids: np.ndarray
    store: object | None


def training_set(workspace: Workspace, *, reads: str = "mfcc") -> Songs:
    """Warm songs with features and their factors; cold songs, which all need them.

    reads : "mfcc" or "mel" (audio: the feature store) or "tags" (W/tags).
    """
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    model = load_wmf(workspace, split=split)
    warm_ids = interactions.song_ids[split.warm_songs]
    cold_ids = interactions.song_ids[split.cold_songs]
    store = FeatureStore(workspace.features_dir)
    has_audio = np.array([song in store for song in warm_ids], dtype=bool)
    missing_cold = [song for song in cold_ids if song not in store]
    if missing_cold:
        raise WorkspaceError(
            f"{len(missing_cold)} cold songs have no audio features (e.g. {missing_cold[0]!r}); "
            "extract their clips with `coldtune audio extract`, or make the split again "
            "with only songs that have clips"
        )
    plays = split.training_plays(interactions.matrix)[:, np.flatnonzero(has_audio)]
    tags = read_song_tags(workspace) if reads == "tags" else None
    training = TrainingSet(
        song_ids=warm_ids[has_audio],
        factors=model.song_factors_[has_audio],
        user_factors=model.user_factors_,
        confidence=confidence(plays, alpha=model.alpha, epsilon=model.epsilon),
        features=store,
        tags=tags,
    )
    return Songs(training, cold_ids, store)


def bow_features(workspace: Workspace, config: BowConfig, songs: Songs):
    """The songs' bag-of-words features (section 4.1), cached in W/bow/<key>/: (the
    fitted BagOfWords, warm word frequencies, cold word frequencies).

    k-means with thousands of words is the slow part of every BoW model (11 s for 1,000
    words on the demo world, minutes for 4,000 on the paper's data), so the codebook and
    the word frequencies are kept and shared by bow-linear, bow-mlp, mlr and the tag
    experiment. The key covers the codebook settings, the warm and cold songs and the
    feature store's shards, so a new split or a new extraction makes a new codebook.
    """
    config = config.validate().bow()
    warm_ids, store = songs.training.song_ids, songs.store
    folder = workspace.bow_dir / _bow_key(config, warm_ids, songs.cold_ids, store)
    if (folder / "frequencies.npz").exists():
        bag = BagOfWords.load(folder / "codebook.npz", config)
        with np.load(folder / "frequencies.npz", allow_pickle=False) as saved:
            return bag, saved["warm"], saved["cold"]
    bag = BagOfWords(config).fit([store.song(song, "mfcc") for song in warm_ids])
    warm = bag.transform([store.song(song, "mfcc") for song in warm_ids])
    cold = bag.transform([store.song(song, "mfcc") for song in songs.cold_ids])
    bag.save(folder / "codebook.npz")
    write_json(folder / "config.json", config.to_dict())
    # written last: its presence says the folder is complete
    with atomic_path(folder / "frequencies.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, warm=warm, cold=cold)
    return bag, warm, cold


def warm_tags(workspace: Workspace, song_ids) -> dict[str, dict[str, float]]:
    """The tags of `song_ids` (the warm songs) alone, for training: a cold song's tags
    never reach an audio model."""
    tags = read_song_tags(workspace)
    return {str(song): tags[str(song)] for song in song_ids if str(song) in tags}


def _bow_key(config: BowConfig, warm_ids, cold_ids, store) -> str:
    codebook = {f: getattr(config, f) for f in BowConfig.CODEBOOK_FIELDS}
    key = fingerprint(arrays=(warm_ids, cold_ids), store=store.fingerprint(), **codebook)
    return key[:20]


def run(workspace: Workspace, name: str, config=None, **options) -> dict:
    """Train content model `name` (with `config`, or its defaults changed by `options`)
    on the warm songs; write it and its predictions for the cold songs to W/models/<row>/.
    Returns the report (report.json); under torchrun, processes other than rank 0 train
    their share and return {"rank": r} without writing."""
    spec = content.spec(name)
    config = (config or content.make_config(name, **options)).validate()
    row = spec.row(config)
    folder = workspace.models_dir(row)
    start = time.perf_counter()
    songs = training_set(workspace, reads=spec.reads)
    data = songs.training
    data.checkpoint = folder / "checkpoint.pt"
    if spec.reads == "mfcc":
        bag, warm, _ = bow_features(workspace, config, songs)
        data.bow = (bag, warm)
    if getattr(config, "tag_weight", 0) > 0:  # an audio model taught by warm songs' tags
        data.tags = warm_tags(workspace, data.song_ids)
    model = spec.estimator_class()(config).fit(data)
    if not is_main_process():
        rank = current().rank
        finish()
        return {"rank": rank}
    # only a tags model predicts from tags: an audio model never sees a cold song's
    cold = stored_songs(songs.store, songs.cold_ids, data.tags if spec.reads == "tags" else None)
    factors = model.predict(cold)
    model.save(folder)
    with atomic_path(folder / "predictions.npz") as tmp, open(tmp, "wb") as handle:
        arrays = {"song_ids": np.asarray(songs.cold_ids, dtype=str), "factors": factors}
        if hasattr(model, "user_factors_"):  # a model that scores with users of its own
            arrays["user_factors"] = model.user_factors_
        np.savez(handle, **arrays)
    report = {
        "model": name,
        "row": row,
        "warm_songs": len(data.song_ids),
        "cold_songs": len(songs.cold_ids),
        **model.fit_report_,
    }
    if spec.reads == "tags":
        report["cold_songs_with_tags"] = model.tagged(cold)
    report["seconds"] = round(time.perf_counter() - start, 2)
    write_json(folder / "report.json", report)
    finish()
    return report
