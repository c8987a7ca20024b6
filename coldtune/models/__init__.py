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
from coldtune.models.distributed import current, finish, is_main_process
from coldtune.workspace import Workspace, atomic_path, write_json


@dataclass
class TrainingData:
    """What every content model learns from: warm songs' ids and factors, cold ids."""

    warm_ids: np.ndarray
    warm_factors: np.ndarray  # [shape=(n_warm, k)], WMF song factors
    cold_ids: np.ndarray
    user_factors: np.ndarray  # WMF's X, for the WPE objective
    warm_confidence: object  # c_ui of the warm songs kept [shape=(n_users, n_warm)], eq. 2


def training_data(workspace: Workspace) -> TrainingData:
    """Warm songs with audio and their factors; cold songs, which all need audio."""
    from coldtune.audio.store import FeatureStore
    from coldtune.data.plays import load_interactions
    from coldtune.data.splits import load_split
    from coldtune.pipeline import load_wmf

    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    model = load_wmf(workspace, split=split)
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
    from coldtune.cf.wmf import confidence

    plays = split.training_plays(interactions.matrix)[:, np.flatnonzero(has_audio)]
    conf = confidence(plays, alpha=model.alpha, epsilon=model.epsilon)
    return TrainingData(
        warm_ids[has_audio], model.song_factors_[has_audio], cold_ids, model.user_factors_, conf
    )


def _fingerprint(data: TrainingData) -> str:
    import hashlib

    digest = hashlib.blake2b(digest_size=12)
    digest.update("\n".join(map(str, data.warm_ids)).encode())
    digest.update(np.ascontiguousarray(data.warm_factors).tobytes())
    return digest.hexdigest()


@dataclass
class BowFeatures:
    """Word frequencies of the warm and cold songs, and the codebook (learned on warm
    songs only) that made them."""

    warm_ids: np.ndarray
    warm: np.ndarray  # [shape=(n_warm, words)]
    cold_ids: np.ndarray
    cold: np.ndarray  # [shape=(n_cold, words)]
    bag: object  # the fitted BagOfWords, to turn a new clip's MFCC frames into words


def bow_features(workspace: Workspace, *, config=None, data: TrainingData | None = None):
    """The songs' bag-of-words features (section 4.1), cached in W/bow/<key>/.

    k-means with thousands of words is the slow part of every BoW model (11 s for 1,000
    words on the demo world, minutes for 4,000 on the paper's data), so the codebook and
    the word frequencies are kept and shared by bow-linear, bow-mlp, mlr and the tag
    experiment. The key covers the codebook settings, the warm and cold songs and the
    feature store's shards, so a new split or a new extraction makes a new codebook.
    """
    from coldtune.audio.store import FeatureStore
    from coldtune.models.bow import BagOfWords, BowConfig

    config = (config or BowConfig()).validate()
    data = data or training_data(workspace)
    store = FeatureStore(workspace.features_dir)
    key = _bow_key(config, data, store)
    folder = workspace.root / "bow" / key
    if (folder / "frequencies.npz").exists():
        bag = BagOfWords.load(folder / "codebook.npz", config)
        with np.load(folder / "frequencies.npz", allow_pickle=False) as saved:
            return BowFeatures(data.warm_ids, saved["warm"], data.cold_ids, saved["cold"], bag)
    bag = BagOfWords(config).fit([store.song(song, "mfcc") for song in data.warm_ids])
    warm = bag.transform([store.song(song, "mfcc") for song in data.warm_ids])
    cold = bag.transform([store.song(song, "mfcc") for song in data.cold_ids])
    bag.save(folder / "codebook.npz")
    write_json(folder / "config.json", config.to_dict())
    # written last: its presence says the folder is complete
    with atomic_path(folder / "frequencies.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, warm=warm, cold=cold)
    return BowFeatures(data.warm_ids, warm, data.cold_ids, cold, bag)


def _bow_key(config, data: TrainingData, store) -> str:
    import hashlib

    from coldtune.models.bow import BagOfWords

    digest = hashlib.blake2b(digest_size=10)
    digest.update(repr([getattr(config, f) for f in BagOfWords.CODEBOOK_FIELDS]).encode())
    for ids in (data.warm_ids, data.cold_ids):
        digest.update("\n".join(map(str, ids)).encode() + b"\0")
    for name in store.shard_names:
        index = store.root / "shards" / f"{name}.parquet"
        digest.update(f"{name}:{index.stat().st_size}:{index.stat().st_mtime_ns}".encode())
    return digest.hexdigest()


def _bow_features(workspace: Workspace, data: TrainingData, config) -> tuple:
    features = bow_features(workspace, config=config, data=data)
    return features.warm, features.cold


def _whitened_bow_pca(workspace: Workspace, data: TrainingData, config) -> tuple:
    """Section 4.1's features for the torch models: word frequencies -> PCA keeping
    `config.variance` -> each component scaled to unit variance on the warm songs (the
    components differ in scale by orders; whitened, every one starts with equal weight).
    Returns (warm, cold) float32 tensors and the number of components."""
    import torch

    from coldtune.models.bow import PCA

    warm, cold = _bow_features(workspace, data, config)
    pca = PCA(config.variance).fit(warm)
    warm_z, cold_z = pca.transform(warm), pca.transform(cold)
    scale = warm_z.std(axis=0) + 1e-8
    return (
        torch.as_tensor((warm_z / scale).astype(np.float32)),
        torch.as_tensor((cold_z / scale).astype(np.float32)),
        int(pca.components_.shape[0]),
    )


def _train_bow_linear(workspace: Workspace, **options) -> dict:
    from coldtune.models.bow import BowConfig, PCARidge

    config = BowConfig(**options).validate()
    data = training_data(workspace)
    warm, cold = _bow_features(workspace, data, config)
    regression = PCARidge(config).fit(warm, data.warm_factors)
    report = {
        "warm_songs": len(data.warm_ids),
        "cold_songs": len(data.cold_ids),
        "pca_components": int(regression.components_.shape[0]),
        "alpha": regression.alpha_,
        "validation_mse": regression.validation_mse_,
    }
    return {
        "config": config.to_dict(),
        "predictions": (data.cold_ids, regression.predict(cold)),
        "report": report,
    }


DEFAULT_DROPOUT = {"mse": 0.5, "wpe": 0.0}
"""With a few thousand warm songs, 1,000 hidden units overfit within a few epochs. On
the default demo world, dropout 0.5 took bow-mlp's cold-song AUC from 0.583 to 0.609
with MSE, but from 0.573 down to 0.558 with WPE (and to chance on the small world),
so each objective has its own default."""


def _train_bow_mlp(
    workspace: Workspace,
    *,
    hidden: int = 1000,
    dropout: float | None = None,
    objective: str = "mse",
    learning_rate: float = 1e-3,
    optimizer: str = "adamw",
    max_epochs: int = 200,
    patience: int = 10,
    **options,
) -> dict:
    """Section 4.1's MLP: BoW -> PCA (95%) -> 1,000 ReLU units -> the factors, trained
    with eq. (4) or eq. (5) in the shared loop."""
    import torch

    from coldtune.models.bow import BowConfig
    from coldtune.models.objectives import OBJECTIVES, WPELoss, mse_loss
    from coldtune.models.training import TrainConfig, train_loop

    if dropout is None:
        dropout = DEFAULT_DROPOUT[objective] if objective in DEFAULT_DROPOUT else 0.0
    if not 0 <= dropout < 1:
        raise ParameterError(f"dropout must be in [0, 1), got {dropout!r}")
    if objective not in OBJECTIVES:
        raise ParameterError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    config = BowConfig(**options).validate()
    train_config = TrainConfig(
        optimizer=optimizer,
        learning_rate=learning_rate,
        max_epochs=max_epochs,
        patience=patience,
        seed=config.seed,
    ).validate()
    data = training_data(workspace)
    features, cold_features, components = _whitened_bow_pca(workspace, data, config)
    targets = torch.as_tensor(data.warm_factors.astype(np.float32))
    torch.manual_seed(config.seed)
    k = targets.shape[1]
    net = torch.nn.Sequential(
        torch.nn.Dropout(0.4 * dropout),
        torch.nn.Linear(features.shape[1], hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, k),
    )
    if objective == "wpe":
        wpe = WPELoss(data.user_factors, data.warm_confidence)

        def loss(predicted, rows):
            return wpe(predicted.cpu(), rows)
    else:

        def loss(predicted, rows):
            return mse_loss(predicted.cpu(), targets[rows])

    result = train_loop(
        net,
        n_items=len(features),
        make_batch=lambda rows, _rng: features[rows],
        objective=loss,
        config=train_config,
        checkpoint=workspace.models_dir(f"bow-mlp-{objective}") / "checkpoint.pt",
        identity={
            "bow": config.to_dict(),
            "hidden": hidden,
            "dropout": dropout,
            "objective": objective,
            "data": _fingerprint(data),  # a new split or WMF fit starts afresh
        },
        device="cpu",
    )
    net.eval()
    with torch.no_grad():
        predictions = net(cold_features).numpy()
    report = {
        "warm_songs": len(data.warm_ids),
        "cold_songs": len(data.cold_ids),
        "pca_components": components,
        "objective": objective,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "best_validation_loss": result.best_validation_loss,
        "resumed_from_epoch": result.resumed_from_epoch,
    }
    return {
        "name": f"bow-mlp-{objective}",
        "config": {
            "bow": config.to_dict(),
            "train": train_config.to_dict(),
            "hidden": hidden,
            "dropout": dropout,
        },
        "predictions": (data.cold_ids, predictions),
        "report": report,
    }


def _train_mlr(
    workspace: Workspace,
    *,
    dims: int = 50,
    neighbours: int = 10,
    margin: float = 1.0,
    learning_rate: float = 3e-3,
    optimizer: str = "adamw",
    batch_size: int = 256,
    max_epochs: int = 100,
    patience: int = 10,
    **options,
) -> dict:
    """Section 4.1's metric learning to rank on BoW-PCA features (coldtune/models/mlr.py):
    a metric learned from shared listeners; users score a cold song by mean similarity
    to the songs they played."""
    import torch

    from coldtune.models.bow import BowConfig
    from coldtune.models.mlr import (
        Metric,
        MLRConfig,
        listener_neighbours,
        sample_triplets,
        triplet_auc_loss,
        usage_factors,
    )
    from coldtune.models.training import TrainConfig, train_loop

    config = MLRConfig(dims=dims, neighbours=neighbours, margin=margin).validate()
    bow_config = BowConfig(**options).validate()
    train_config = TrainConfig(
        optimizer=optimizer,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
        seed=bow_config.seed,
    ).validate()
    data = training_data(workspace)
    features, cold_features, components = _whitened_bow_pca(workspace, data, bow_config)
    near = listener_neighbours(data.warm_confidence, config.neighbours)
    queries = np.flatnonzero((near >= 0).any(axis=1))  # songs with a co-listened song
    if len(queries) < 2:
        raise WorkspaceError("fewer than 2 warm songs share listeners: nothing to learn from")
    torch.manual_seed(bow_config.seed)
    metric = Metric(features.shape[1], config.dims or features.shape[1])

    def make_batch(rows: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        query = queries[rows]
        relevant, irrelevant = sample_triplets(query, near, len(features), rng)
        return features[np.concatenate([query, relevant, irrelevant])]

    result = train_loop(
        metric,
        n_items=len(queries),
        make_batch=make_batch,
        objective=lambda embedded, _rows: triplet_auc_loss(embedded, config.margin),
        config=train_config,
        checkpoint=workspace.models_dir("mlr") / "checkpoint.pt",
        identity={"mlr": config.to_dict(), "bow": bow_config.to_dict(), "data": _fingerprint(data)},
        device="cpu",
    )
    metric.eval()
    with torch.no_grad():
        warm_embedded = metric(features).numpy().astype(np.float64)
        cold_embedded = metric(cold_features).numpy()
    # the users' played songs are the warm songs' training plays; cold plays never enter
    user_factors, song_factors = usage_factors(
        warm_embedded, data.warm_confidence, cold_embedded.astype(np.float64)
    )
    report = {
        "warm_songs": len(data.warm_ids),
        "cold_songs": len(data.cold_ids),
        "query_songs": len(queries),
        "pca_components": components,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "best_validation_loss": result.best_validation_loss,
        "resumed_from_epoch": result.resumed_from_epoch,
    }
    return {
        "config": {
            "mlr": config.to_dict(),
            "bow": bow_config.to_dict(),
            "train": train_config.to_dict(),
        },
        "predictions": (data.cold_ids, song_factors),
        "user_factors": user_factors,
        "report": report,
    }


def _train_metadata(workspace: Workspace, *, vocabulary: int = 1000, seed: int = 0) -> dict:
    """The metadata-based reference of section 1.1: the songs' Last.fm tags (weights /
    100, the `vocabulary` tags most used on warm songs) -> ridge -> the factors. A song
    without tags gets the warm songs' mean factors (the ridge's bias)."""
    import pyarrow.parquet as pq

    from coldtune.models.bow import BowConfig, PCARidge

    path = workspace.root / "tags" / "tags.parquet"
    if not path.exists():
        raise WorkspaceError(
            f"{path}: no tags in this workspace; run `coldtune tags ingest LASTFM_DIR "
            "--tracks unique_tracks.txt --workspace W` first"
        )
    tags = pq.read_table(path).to_pydict()
    data = training_data(workspace)
    warm_set = set(data.warm_ids)
    counts: dict[str, int] = {}
    for song, tag in zip(tags["song_id"], tags["tag"], strict=True):
        if song in warm_set:
            counts[tag] = counts.get(tag, 0) + 1
    chosen = sorted((t for t in counts if counts[t] >= 2), key=lambda t: (-counts[t], t))
    column = {tag: j for j, tag in enumerate(chosen[:vocabulary])}
    if not column:
        raise WorkspaceError("no tag is used by two warm songs: nothing to learn from")

    def matrix(ids: np.ndarray) -> np.ndarray:
        row = {song: i for i, song in enumerate(ids)}
        out = np.zeros((len(ids), len(column)), dtype=np.float64)
        for song, tag, weight in zip(tags["song_id"], tags["tag"], tags["weight"], strict=True):
            if song in row and tag in column:
                out[row[song], column[tag]] = weight / 100.0
        return out

    warm, cold = matrix(data.warm_ids), matrix(data.cold_ids)
    config = BowConfig(variance=1.0, seed=seed)  # every component: tags are few already
    regression = PCARidge(config).fit(warm, data.warm_factors)
    report = {
        "warm_songs": len(data.warm_ids),
        "cold_songs": len(data.cold_ids),
        "tags": len(column),
        "cold_songs_with_tags": int((cold.sum(axis=1) > 0).sum()),
        "alpha": regression.alpha_,
    }
    return {
        "config": {"vocabulary": vocabulary, "alphas": list(config.alphas), "seed": seed},
        "predictions": (data.cold_ids, regression.predict(cold)),
        "report": report,
    }


def _train_cnn(
    workspace: Workspace,
    *,
    architecture: str = "paper",
    objective: str = "mse",
    learning_rate: float = 3e-4,
    optimizer: str = "adamw",
    batch_size: int = 32,
    max_epochs: int = 30,
    patience: int = 5,
    dropout: float = 0.0,
    windows_per_song: int = 4,
    precision: str = "auto",
    seed: int = 0,
) -> dict:
    """Section 4.2: a CNN on random 3 s log-mel windows of the warm songs, trained with
    eq. (4) or eq. (5) in the shared loop; a cold song's factors are the mean over its
    consecutive windows.

    windows_per_song : random windows of each song in a batch (a batch of `batch_size`
        songs holds batch_size x windows_per_song windows), all with the song's target;
        validation is split by song, so no song is on both sides.

    The defaults were chosen on the default demo world (docs/models.md): with 4 windows
    per song and a learning rate of 1e-3, the paper's network collapsed within its first
    epoch to a constant output (every ReLU dead, AUC 0.5); at 3e-4 it trained.
    """
    import torch

    from coldtune.audio.store import FeatureStore
    from coldtune.models.cnn import WINDOW_FRAMES, CNNConfig, build_cnn, predict_clip
    from coldtune.models.objectives import OBJECTIVES, WPELoss, mse_loss
    from coldtune.models.training import TrainConfig, train_loop

    if objective not in OBJECTIVES:
        raise ParameterError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if windows_per_song < 1:
        raise ParameterError(f"windows_per_song must be >= 1, got {windows_per_song!r}")
    if precision == "auto":
        from coldtune.models.training import auto_precision

        precision = auto_precision()
    train_config = TrainConfig(
        optimizer=optimizer,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
        precision=precision,
        seed=seed,
    ).validate()
    data = training_data(workspace)
    store = FeatureStore(workspace.features_dir)
    config = CNNConfig(
        architecture=architecture,
        n_mels=store.width("mel"),
        factors=data.warm_factors.shape[1],
        dropout=dropout,
    ).validate()
    torch.manual_seed(seed)
    model = build_cnn(config)
    # per-band scale of the input, from one random window of each warm song
    sample = store.random_windows(
        data.warm_ids, frames=WINDOW_FRAMES, rng=np.random.default_rng([seed, 3])
    ).astype(np.float32)
    model.set_input_scale(sample.mean(axis=(0, 1)), sample.std(axis=(0, 1)))
    targets = torch.as_tensor(data.warm_factors.astype(np.float32))
    if objective == "wpe":
        wpe = WPELoss(data.user_factors, data.warm_confidence)

        def loss(predicted, rows):
            return wpe(predicted.float().cpu(), np.repeat(rows, windows_per_song))
    else:

        def loss(predicted, rows):
            return mse_loss(predicted.float().cpu(), targets[np.repeat(rows, windows_per_song)])

    def make_batch(rows: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        songs = data.warm_ids[np.repeat(rows, windows_per_song)]
        windows = store.random_windows(songs, frames=WINDOW_FRAMES, rng=rng)
        return torch.from_numpy(windows.astype(np.float32))

    name = f"cnn-{architecture}-{objective}"
    result = train_loop(
        model,
        n_items=len(data.warm_ids),
        make_batch=make_batch,
        objective=loss,
        config=train_config,
        checkpoint=workspace.models_dir(name) / "checkpoint.pt",
        identity={
            "cnn": config.to_dict(),
            "objective": objective,
            "windows_per_song": windows_per_song,
            "data": _fingerprint(data),
        },
    )
    if not is_main_process():  # under torchrun, rank 0 predicts and writes; `train` skips
        return {"name": name, "predictions": None, "config": {}, "report": {}}
    predictions = np.stack(
        [predict_clip(model, store.song(song, "mel")) for song in data.cold_ids]
    ).astype(np.float32)
    with atomic_path(workspace.models_dir(name) / "weights.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    report = {
        "warm_songs": len(data.warm_ids),
        "cold_songs": len(data.cold_ids),
        "objective": objective,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "best_validation_loss": result.best_validation_loss,
        "resumed_from_epoch": result.resumed_from_epoch,
        "windows_per_s": round(
            windows_per_song * float(np.median([r["items_per_s"] for r in result.history])), 1
        ),
    }
    return {
        "name": name,
        "config": {
            "cnn": config.to_dict(),
            "train": train_config.to_dict(),
            "windows_per_song": windows_per_song,
        },
        "predictions": (data.cold_ids, predictions),
        "report": report,
    }


# In Table 2's order (metadata, section 1.1's reference, last): results tables follow it.
CONTENT_MODELS: dict[str, Callable[..., dict]] = {
    "bow-linear": _train_bow_linear,
    "bow-mlp": _train_bow_mlp,
    "mlr": _train_mlr,
    "cnn": _train_cnn,
    "metadata": _train_metadata,
}


def table_order(row: str) -> tuple[int, str]:
    """Sort key of a results row named after its model folder (`cnn-paper-mse` is a
    `cnn`): Table 2's order of CONTENT_MODELS, then the name; unknown names last."""
    ranks = [
        i for i, name in enumerate(CONTENT_MODELS) if row == name or row.startswith(name + "-")
    ]
    return (max(ranks, default=len(CONTENT_MODELS)), row)


def model_options(name: str) -> tuple[str, ...]:
    """The options content model `name` takes: its trainer's keywords, and the
    bag-of-words settings for the models built on bag-of-words features."""
    import inspect

    from coldtune.models.bow import BowConfig

    parameters = inspect.signature(CONTENT_MODELS[name]).parameters.values()
    names = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        names += [field for field in BowConfig.__dataclass_fields__ if field not in names]
    return tuple(names)


def train(workspace: Workspace, name: str, **options) -> dict:
    """Train content model `name` and write its predictions for the cold songs."""
    if name not in CONTENT_MODELS:
        raise ParameterError(f"model must be one of {', '.join(CONTENT_MODELS)}, got {name!r}")
    accepted = model_options(name)
    wrong = [option for option in options if option not in accepted]
    if wrong:
        flags = ", ".join("--" + option.replace("_", "-") for option in wrong)
        takes = ", ".join("--" + option.replace("_", "-") for option in accepted)
        raise ParameterError(f"{flags} does not apply to {name}; it takes {takes}")
    start = time.perf_counter()
    result = CONTENT_MODELS[name](workspace, **options)
    if not is_main_process():  # under torchrun only rank 0 writes the model's artefacts
        rank = current().rank
        finish()
        return {"rank": rank}
    # a model may name its row by its settings (bow-mlp-wpe); its folder follows
    folder = workspace.models_dir(result.get("name", name))
    song_ids, factors = result["predictions"]
    with atomic_path(folder / "predictions.npz") as tmp, open(tmp, "wb") as handle:
        arrays = {"song_ids": np.asarray(song_ids, dtype=str), "factors": factors}
        if "user_factors" in result:  # a model that scores with users of its own (mlr)
            arrays["user_factors"] = result["user_factors"]
        np.savez(handle, **arrays)
    write_json(folder / "config.json", result["config"])
    report = {**result["report"], "seconds": round(time.perf_counter() - start, 2)}
    write_json(folder / "report.json", report)
    finish()
    return report
