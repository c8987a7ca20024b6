"""The analyses of section 5 on a workspace: tag prediction (5.1) and the song map
(Figure 1). Each reads the earlier steps' artefacts, hands arrays to `coldtune.eval`,
and writes its results under W/results/ with the fingerprint of what it read."""

from __future__ import annotations

import os
import time
from dataclasses import asdict

import numpy as np

from coldtune.catalogue import Catalogue
from coldtune.content.bow import PCA
from coldtune.content.configs import BowConfig, BowLinearConfig
from coldtune.data.tags import read_song_tags
from coldtune.errors import ParameterError, WorkspaceError
from coldtune.eval.song_map import (
    MapConfig,
    default_colour_tags,
    map_data,
    map_page,
    relative_clip,
    tsne,
    write_png,
)
from coldtune.eval.tags import (
    SONG_SETS,
    TagConfig,
    most_frequent_tags,
    tag_labels,
    tag_table,
    tags_markdown,
)
from coldtune.steps.catalogue import (
    catalogue_predictions,
    choose_clip_model,
    inputs_key,
    load_catalogue,
    load_clip_model,
)
from coldtune.steps.train import bow_features, training_set
from coldtune.threads import one_thread
from coldtune.workspace import Workspace, atomic_path, read_json, write_json


def song_tag_sets(workspace: Workspace) -> dict[str, set[str]]:
    """song id -> its tags (W/tags), empty when the workspace has none."""
    if not workspace.tags_path.exists():
        return {}
    return {song: set(tags) for song, tags in read_song_tags(workspace).items()}


def _bow_pca(workspace: Workspace, songs) -> dict[str, np.ndarray]:
    """BoW-PCA features of the warm and cold songs, with the codebook of bow-linear when
    the workspace trained it (so its cached words are reused)."""
    saved = workspace.models_dir("bow-linear") / "config.json"
    if saved.exists():
        config = BowLinearConfig.from_dict(read_json(saved, what="", hint="")["config"]).bow()
    else:  # the demo's choice: half as many words as warm songs, at most 1,000
        n_warm = len(songs.training.song_ids)
        config = BowConfig(words=int(min(1000, max(16, n_warm // 2))))
    _, warm, cold = bow_features(workspace, config, songs)  # cached per codebook
    pca = PCA(config.variance).fit(warm)
    return {"warm": pca.transform(warm), "cold": pca.transform(cold)}


def tags(
    workspace: Workspace,
    config: TagConfig = TagConfig(),
    *,
    model: str | None = None,
    workers: int | None = None,
    on_progress=None,
) -> dict:
    """`coldtune tags`: the table of section 5.1 for this workspace; writes
    W/results/tags.json and tags.md and returns the JSON.

    workers : processes for the tags' cross-validations; None: one per core.
    on_progress : called with (row, column, tags done, tags to do).
    """
    config.validate()
    start = time.perf_counter()
    if not workspace.tags_path.exists():
        raise WorkspaceError(
            f"{workspace.tags_path}: no tags in this workspace; run `coldtune tags ingest "
            "LASTFM_DIR --tracks unique_tracks.txt --workspace W` first"
        )
    song_tags = song_tag_sets(workspace)
    songs = training_set(workspace)  # warm songs with audio, every cold song
    warm_ids, cold_ids = songs.training.song_ids, songs.cold_ids
    ids = {"warm": warm_ids, "cold": cold_ids}
    chosen = most_frequent_tags(song_tags, warm_ids, config.tags)
    if not chosen:
        raise WorkspaceError("no warm song has a tag: nothing to predict")
    model_name = choose_clip_model(workspace, model)
    clip_model = load_clip_model(workspace, model_name)
    bow = _bow_pca(workspace, songs)
    predicted = {
        name: catalogue_predictions(workspace, clip_model, ids[name]) for name in SONG_SETS
    }
    features = {
        "wmf": {"warm": songs.training.factors},
        "bow-pca": bow,
        "predicted": predicted,
    }
    labels = {name: tag_labels(song_tags, ids[name], chosen) for name in SONG_SETS}
    usable = {
        name: [
            j
            for j in range(len(chosen))
            if config.min_songs <= labels[name][:, j].sum() <= len(ids[name]) - config.min_songs
        ]
        for name in SONG_SETS
    }
    with one_thread():
        rows, per_tag = tag_table(
            features,
            labels,
            usable,
            chosen,
            config,
            on_progress,
            workers=workers or os.cpu_count() or 1,
        )
    results = {
        "title": "Tag prediction (section 5.1)",
        "config": asdict(config),
        "model": model_name,
        "dims": {
            "wmf": int(songs.training.factors.shape[1]),
            "bow-pca": int(bow["warm"].shape[1]),
            "predicted": int(predicted["warm"].shape[1]),
        },
        "songs": {name: len(ids[name]) for name in SONG_SETS},
        "tags": chosen,
        "tags_used": {name: len(usable[name]) for name in SONG_SETS},
        "rows": rows,
        "per_tag": per_tag,
        "seconds": round(time.perf_counter() - start, 2),
        "inputs": inputs_key(workspace, model_name),
    }
    write_json(workspace.results_dir / "tags.json", results)
    with atomic_path(workspace.results_dir / "tags.md") as tmp:
        tmp.write_text(tags_markdown(results))
    return results


def song_map(
    workspace: Workspace,
    config: MapConfig = MapConfig(),
    *,
    catalogue: Catalogue | None = None,
    model: str | None = None,
) -> dict:
    """`coldtune map`: t-SNE of every song with audio; writes map.json, map.png and
    map.html under W/results/map/ and returns the JSON written."""
    config.validate()
    start = time.perf_counter()
    catalogue = catalogue or load_catalogue(workspace, model=model)
    rows = np.flatnonzero(catalogue.has_audio)
    unit = catalogue.predicted_embedding(catalogue.predicted_factors[rows])
    xy = tsne(unit, perplexity=config.perplexity, seed=config.seed)
    tag_sets = song_tag_sets(workspace)
    song_tags = [tag_sets.get(song, set()) for song in catalogue.song_ids[rows]]
    colour = list(config.tags) or default_colour_tags(song_tags)
    unknown = [tag for tag in colour if not any(tag in tags for tags in song_tags)]
    if unknown:
        raise ParameterError(f"no song on the map has the tag {unknown[0]!r}")
    result = {
        "model": catalogue.model_name,
        "config": asdict(config),
        "colour_tags": colour,
        "song_ids": catalogue.song_ids[rows].tolist(),
        "x": [round(float(v), 3) for v in xy[:, 0]],
        "y": [round(float(v), 3) for v in xy[:, 1]],
        "seconds": round(time.perf_counter() - start, 2),
        "inputs": inputs_key(workspace, catalogue.model_name),
    }
    folder = workspace.results_dir / "map"
    write_json(folder / "map.json", result)
    write_png(folder / "map.png", xy, song_tags, colour, catalogue.cold[rows], catalogue.model_name)
    page = folder / "map.html"
    data = map_data(catalogue, rows, xy, song_tags, colour, clip_url=relative_clip(catalogue, page))
    with atomic_path(page) as tmp:
        tmp.write_text(map_page(data, title=f"coldtune: song map ({catalogue.model_name})"))
    return result
