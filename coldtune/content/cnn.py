"""Convolutional networks of section 4.2: log-mel windows of 3 s -> song factors.

    "The networks were trained on windows of 3 seconds sampled randomly from the audio
    clips. [...] To predict the latent factors for an entire clip, we averaged over the
    predictions for consecutive windows." (section 4.2)

Three architectures, registered by name:

- `paper`: the paper's network, two convolutional layers over time (the 128 mel bands
  are the input channels) with ReLUs and max-pooling, then two fully connected layers.
  The paper does not give the layer sizes; these are ours: 256 filters of width 4,
  pooling 4 then 2, 1,024 hidden units.
- `global-pooling`: the variant Dieleman described for Spotify in 2014: convolutions of
  width 4 with 256, 256, 512 and 512 filters, max-pooling 4, 2 and 2 between them, then
  the mean, the maximum and the L2 norm of each feature over time, concatenated, and
  two dense layers of 2,048 units, with optional dropout.
- `small`: the global-pooling network with half its filters and one dense layer of 512
  units (ours, for the demo world's 1,600 warm songs on a CPU).

Input: frames-major log-mel windows [shape=(batch, frames, n_mels)], as the feature
store gives them; the network standardises them with the training set's mean and
spread (buffers set by `set_input_scale`, saved with the weights). `forward` returns
the predicted factors; the losses live in `objectives.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from coldtune.content.base import (
    FeatureSource,
    SongFeatures,
    TrainingSet,
    frames_of,
    read_model_files,
    save_model,
    unit_rows,
)
from coldtune.content.configs import CNNConfig
from coldtune.content.distributed import is_main_process
from coldtune.content.objectives import WPELoss, mse_loss
from coldtune.content.training import (
    auto_precision,
    fit_report,
    network_state,
    train_config,
    train_loop,
)
from coldtune.content.validation import RankingValidation, split_rows
from coldtune.errors import ParameterError

WINDOW_FRAMES = 130
"""3 s at 22,050 Hz with hop 512: 1 + 66,150 // 512 = 130 frames, the shortest clip the
feature store keeps."""


@dataclass(frozen=True)
class NetworkConfig:
    """A network's shape: its architecture and what the data decides (bands, factors)."""

    architecture: str = "paper"  # a name in CNN_ARCHITECTURES
    n_mels: int = 128
    window_frames: int = WINDOW_FRAMES
    factors: int = 50
    dropout: float = 0.0  # the paper: "did not yield any significant improvements"
    # batch normalisation (Ioffe and Szegedy 2015) between each convolution and its ReLU
    batch_norm: bool = False

    def validate(self) -> NetworkConfig:
        if self.architecture not in CNN_ARCHITECTURES:
            raise ParameterError(
                f"architecture must be one of {', '.join(CNN_ARCHITECTURES)}, "
                f"got {self.architecture!r}"
            )
        if self.window_frames < 64:
            raise ParameterError(
                f"window_frames must be >= 64 (the layers' pooling needs it), "
                f"got {self.window_frames!r}"
            )
        if not 0 <= self.dropout < 1:
            raise ParameterError(f"dropout must be in [0, 1), got {self.dropout!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class _Standardised(nn.Module):
    """Holds the input scale as buffers, so that it is saved with the weights."""

    # False: the Conv1d modules on a CPU too (what benchmarks/bench_cnn_train.py compares)
    frames_major_on_cpu = True

    def __init__(self, n_mels: int):
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(n_mels))
        self.register_buffer("input_std", torch.ones(n_mels))

    def set_input_scale(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Per-band mean and spread of the training windows (dB)."""
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_std.copy_(torch.as_tensor(np.maximum(std, 1e-3), dtype=torch.float32))

    def _over_time(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [shape=(B, frames, n_mels)] -> the convolutions' output
        [shape=(B, frames', channels)]: on a CPU in the windows' own frames-major layout
        (`frames_major`), elsewhere by the Conv1d modules on the channels-first
        transpose (the bands are the channels)."""
        x = (windows.float() - self.input_mean) / self.input_std
        if x.device.type == "cpu" and self.frames_major_on_cpu:
            return frames_major(self.features, x)
        return self.features(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [shape=(B, frames, n_mels)] -> factors [shape=(B, factors)]"""
        return self.head[-1](self.embed(windows))

    def embed(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [shape=(B, frames, n_mels)] -> the last hidden layer's activations
        [shape=(B, hidden)], which the output layer maps linearly onto the factors."""
        return self.head[:-1](self._pooled(windows))


def _convolutions(
    channels: list[int], pools: list[int | None], *, batch_norm: bool = False
) -> nn.Sequential:
    """Convolutions over time of width 4, each followed (with `batch_norm`, after a batch
    normalisation) by a ReLU and, where `pools` gives a size, max-pooling:
    channels[i] -> channels[i + 1] for each layer."""
    layers: list[nn.Module] = []
    for n_in, n_out, pool in zip(channels[:-1], channels[1:], pools, strict=True):
        layers.append(nn.Conv1d(n_in, n_out, kernel_size=4, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(n_out))
        layers.append(nn.ReLU())
        if pool is not None:
            layers.append(nn.MaxPool1d(pool))
    return nn.Sequential(*layers)


def _conv_frames_major(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    # each output frame's k input frames one after the other (k x C numbers that lie
    # together in memory, so gathering them is a plain copy), then one matrix product
    # for the whole batch, with conv.weight [shape=(out, C, k)] laid out tap by tap
    assert conv.stride == (1,) and conv.padding == (0,) and conv.dilation == (1,), conv
    taps = x.unfold(1, conv.kernel_size[0], 1).transpose(2, 3)  # (B, T - k + 1, k, C)
    b, t = taps.shape[:2]
    rows = taps.reshape(b * t, -1)
    weight = conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1).t()
    y = rows @ weight if conv.bias is None else torch.addmm(conv.bias, rows, weight)
    return y.view(b, t, -1)


def _batch_norm_frames_major(norm: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    # per channel over the batch and the frames, as on (B, C, T); the same running stats
    return norm(x.reshape(-1, x.shape[-1])).view_as(x)


def _pool_frames_major(pool: nn.MaxPool1d, x: torch.Tensor) -> torch.Tensor:
    # windows of `size` frames side by side, the tail shorter than one left out
    size = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
    t = x.shape[1] // size
    return x[:, : t * size].unflatten(1, (t, size)).amax(dim=2)


_FRAMES_MAJOR = {
    nn.Conv1d: _conv_frames_major,
    nn.BatchNorm1d: _batch_norm_frames_major,
    nn.ReLU: lambda _, x: torch.relu(x),
    nn.MaxPool1d: _pool_frames_major,
}


def frames_major(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`layers` (built by `_convolutions`) applied to x [shape=(B, frames, channels)],
    the same function as `layers(x.transpose(1, 2)).transpose(1, 2)` with the same
    weights. Each convolution is one matrix product over all the batch's frames, which
    a CPU's BLAS computes near its peak where oneDNN's 1-D convolutions, and above all
    their backward pass, are not: training the small network on 2 cores, 1,196 against
    1,029 windows/s, 1.16x (docs/benchmarks.md, "CNN training on a CPU")."""
    for layer in layers:
        run = _FRAMES_MAJOR.get(type(layer))
        if run is None:
            known = ", ".join(kind.__name__ for kind in _FRAMES_MAJOR)
            raise TypeError(
                f"frames_major runs {known} layers, not {type(layer).__name__}: "
                "add it to _FRAMES_MAJOR or call the layers on the channels-first input"
            )
        x = run(layer, x)
    return x


class PaperCNN(_Standardised):
    def __init__(self, config: NetworkConfig):
        super().__init__(config.n_mels)
        self.features = _convolutions(
            [config.n_mels, 256, 256], [4, 2], batch_norm=config.batch_norm
        )
        frames = ((config.window_frames - 3) // 4 - 3) // 2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(256 * frames, 1024),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(1024, config.factors),
        )

    def _pooled(self, windows: torch.Tensor) -> torch.Tensor:
        # flattened channel by channel, as the Conv1d layout lays the weights out
        return self._over_time(windows).transpose(1, 2)


class GlobalPoolingCNN(_Standardised):
    def __init__(self, config: NetworkConfig):
        super().__init__(config.n_mels)
        self.features = _convolutions(
            [config.n_mels, 256, 256, 512, 512], [4, 2, 2, None], batch_norm=config.batch_norm
        )
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(3 * 512, 2048),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(2048, 2048),
            nn.ReLU(),
            nn.Linear(2048, config.factors),
        )

    def _pooled(self, windows: torch.Tensor) -> torch.Tensor:
        h = self._over_time(windows)  # (B, T', 512)
        return torch.cat([h.mean(dim=1), h.amax(dim=1), h.square().mean(dim=1).sqrt()], dim=1)


class SmallCNN(GlobalPoolingCNN):
    """The global-pooling network at half the filters (128, 128, 256, 256) and one dense
    layer of 512 units: 0.9M weights instead of 9.4M, for a few thousand songs on a CPU
    (issue 14: "a narrower net with global pooling may learn more from 7,000 songs")."""

    def __init__(self, config: NetworkConfig):
        _Standardised.__init__(self, config.n_mels)
        self.features = _convolutions(
            [config.n_mels, 128, 128, 256, 256], [4, 2, 2, None], batch_norm=config.batch_norm
        )
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(3 * 256, 512),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(512, config.factors),
        )


CNN_ARCHITECTURES: dict[str, type[nn.Module]] = {
    "paper": PaperCNN,
    "global-pooling": GlobalPoolingCNN,
    "small": SmallCNN,
}


def build_cnn(config: NetworkConfig) -> nn.Module:
    return CNN_ARCHITECTURES[config.validate().architecture](config)


def window_batch(store: FeatureSource, song_ids, *, rng: np.random.Generator) -> torch.Tensor:
    """One random window of each song, float32 [shape=(len(song_ids), WINDOW_FRAMES,
    n_mels)]: a training step's input. torch widens the store's float16 (with the CPU's
    conversion instructions) 3-4x faster than numpy's astype: on 2 cores a batch of 128
    windows reads in 1.1 ms, where numpy's widening alone took 4 ms (bench_cnn_train)."""
    windows = store.random_windows(song_ids, frames=WINDOW_FRAMES, rng=rng)
    return torch.from_numpy(windows).float()


def _consecutive_windows(frames: np.ndarray, window_frames: int) -> np.ndarray:
    n = len(frames) // window_frames
    if n == 0:
        raise ParameterError(f"a clip of {len(frames)} frames is shorter than one window")
    return np.asarray(frames[: n * window_frames], dtype=np.float32).reshape(n, window_frames, -1)


def predict_clip(
    model: nn.Module, frames: np.ndarray, *, window_frames: int = WINDOW_FRAMES, batch: int = 64
) -> np.ndarray:
    """Factors of a whole clip: the mean of the predictions for its consecutive windows
    (section 4.2). frames [shape=(n_frames, n_mels)]; a clip shorter than one window
    is an error, the tail shorter than a window is left out."""
    windows = _consecutive_windows(frames, window_frames)
    device = next(model.parameters()).device
    model.eval()
    outputs = []
    with torch.no_grad():
        for lo in range(0, len(windows), batch):
            outputs.append(model(torch.as_tensor(windows[lo : lo + batch], device=device)).cpu())
    return torch.cat(outputs).mean(dim=0).numpy()


def clip_embeddings(
    model: nn.Module,
    clips: Sequence[np.ndarray],
    *,
    window_frames: int = WINDOW_FRAMES,
    batch: int = 128,
) -> np.ndarray:
    """Each clip's mean over its consecutive windows of the last hidden layer
    [shape=(len(clips), hidden)] float32. The output layer is linear, so it maps a
    clip's mean embedding to the mean of its windows' predictions (`predict_clip`).
    Windows of several clips share a batch of about `batch` windows: on 2 cores 128
    ran 2,736 windows/s where 256 ran 2,122 (the first layer's inputs of 256 windows,
    67 MB, spill out of a 32 MB cache); the embeddings are the same bit for bit."""
    device = next(model.parameters()).device
    model.eval()
    out, pending, owners = [], [], []

    def flush():
        windows = torch.as_tensor(np.concatenate(pending), device=device)
        with torch.no_grad():
            embedded = model.embed(windows).float().cpu().numpy()
        ends = np.cumsum([len(w) for w in pending])
        for part, _ in zip(np.split(embedded, ends[:-1]), owners, strict=True):
            out.append(part.mean(axis=0))
        pending.clear()
        owners.clear()

    for i, frames in enumerate(clips):
        pending.append(_consecutive_windows(frames, window_frames))
        owners.append(i)
        if sum(len(w) for w in pending) >= batch:
            flush()
    if pending:
        flush()
    return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


class RidgeReadout:
    """Ridge regression from a song's mean embedding (standardised) to its factors,
    fitted on warm songs, its regularisation chosen on the validation songs."""

    def fit(self, E: np.ndarray, Y: np.ndarray, alpha: float) -> RidgeReadout:
        self.mean_ = E.mean(axis=0)
        self.scale_ = E.std(axis=0) + 1e-6
        Z = np.hstack([(E - self.mean_) / self.scale_, np.ones((len(E), 1), np.float32)])
        penalty = alpha * np.eye(Z.shape[1])
        penalty[-1, -1] = 0.0  # the bias is not shrunk
        self.weights_ = np.linalg.solve(
            (Z.T @ Z + penalty).astype(np.float64), (Z.T @ Y).astype(np.float64)
        ).astype(np.float32)
        self.alpha_ = float(alpha)
        return self

    def predict(self, E: np.ndarray) -> np.ndarray:
        Z = (E - self.mean_) / self.scale_
        return (Z @ self.weights_[:-1] + self.weights_[-1]).astype(np.float32)

    def arrays(self, prefix: str = "readout.") -> dict[str, np.ndarray]:
        return {
            prefix + "mean": self.mean_,
            prefix + "scale": self.scale_,
            prefix + "weights": self.weights_,
        }

    @classmethod
    def from_arrays(cls, arrays: dict, alpha: float, prefix: str = "readout.") -> RidgeReadout:
        readout = cls()
        readout.mean_ = np.asarray(arrays[prefix + "mean"])
        readout.scale_ = np.asarray(arrays[prefix + "scale"])
        readout.weights_ = np.asarray(arrays[prefix + "weights"])
        readout.alpha_ = alpha
        return readout


class SongPooling(nn.Module):
    """Training with song pooling: a batch holds `windows` consecutive rows per song;
    their embeddings are averaged and the output layer maps the mean to the song's
    factors, as `predict` maps a clip's mean embedding. One 3 s window need not carry
    everything that decides a song's listeners; the mean of several is closer to what
    the model is asked at prediction time. Its weights are the network's own."""

    def __init__(self, network: nn.Module, windows: int):
        super().__init__()
        self.network, self.windows = network, windows

    def embed(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [shape=(B * windows, frames, n_mels)] -> each song's mean embedding
        [shape=(B, hidden)]"""
        embedded = self.network.embed(windows)
        assert embedded.shape[0] % self.windows == 0, (embedded.shape, self.windows)
        return embedded.reshape(-1, self.windows, embedded.shape[1]).mean(dim=1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [shape=(B * windows, frames, n_mels)] -> factors [shape=(B, factors)]"""
        return self.network.head[-1](self.embed(windows))


class WithTags(nn.Module):
    """Training with the auxiliary tag loss: beside the factors of `trained` (a network
    or its SongPooling), logits of the song's tags from the same last hidden layer, by
    a linear layer of its own that only training uses. What makes a tag (a tune type, a
    tempo, an instrument) is then learnt by the layers the factors are read from."""

    def __init__(self, trained: nn.Module, output: nn.Linear, n_tags: int):
        super().__init__()
        self.trained, self.output = trained, output
        self.tags = nn.Linear(output.in_features, n_tags)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """-> [factors | tag logits] [shape=(rows, factors + n_tags)]"""
        embedded = self.trained.embed(windows)
        return torch.cat([self.output(embedded), self.tags(embedded)], dim=1)


def tag_targets(
    tags: dict[str, dict[str, float]], song_ids: Sequence[str], *, min_songs: int
) -> tuple[list[str], np.ndarray]:
    """The tags held by at least `min_songs` of `song_ids` (sorted) and which song holds
    which [shape=(len(song_ids), n_tags)] float32 0/1. A song without tags is all 0."""
    held = [set(tags.get(str(song), {})) for song in song_ids]
    counts: dict[str, int] = {}
    for names in held:
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    vocabulary = sorted(name for name, n in counts.items() if n >= min_songs)
    column = {name: j for j, name in enumerate(vocabulary)}
    Y = np.zeros((len(held), len(vocabulary)), dtype=np.float32)
    for i, names in enumerate(held):
        Y[i, [column[name] for name in names if name in column]] = 1.0
    return vocabulary, Y


class CNN:
    """`cnn`, section 4.2: trained on random 3 s log-mel windows of the warm songs with
    eq. (4) or eq. (5) in the shared loop; a song's factors are the mean over its
    consecutive windows.

    windows_per_song : random windows of each song in a batch (a batch of `batch_size`
        songs holds batch_size x windows_per_song windows), all with the song's target;
        validation is split by song, so no song is on both sides.
    selection : what keeps the best epoch: the validation loss, or the ranking AUC or
        mAP of the validation songs' predicted factors (coldtune.content.validation).
    readout : "network" (the output layer) or "ridge": after training, ridge regression
        from the songs' mean last-hidden-layer embeddings to their factors, fitted on
        the warm songs, its regularisation chosen by `selection` on the validation songs.
    target : "factors" (WMF's) or "unit" (each song's factors scaled to unit norm, as
        Dieleman 2014 did, so the network spends nothing on popularity); MSE only.
    """

    name = "cnn"
    reads = "mel"

    def __init__(self, config: CNNConfig = CNNConfig()):
        self.config = config

    def fit(self, data: TrainingSet) -> CNN:
        config = self.config.validate()
        precision = auto_precision() if config.precision == "auto" else config.precision
        loop = train_config(config, precision=precision)
        store, songs = data.features, data.song_ids
        self.network_config_ = NetworkConfig(
            architecture=config.architecture,
            n_mels=store.width("mel"),
            factors=data.factors.shape[1],
            dropout=config.dropout,
            batch_norm=config.batch_norm,
        ).validate()
        torch.manual_seed(config.seed)
        self.network_ = build_cnn(self.network_config_)
        # per-band scale of the input, from one random window of each warm song
        sample = store.random_windows(
            songs, frames=WINDOW_FRAMES, rng=np.random.default_rng([config.seed, 3])
        ).astype(np.float32)
        self.network_.set_input_scale(sample.mean(axis=(0, 1)), sample.std(axis=(0, 1)))
        goal = unit_rows(data.factors) if config.target == "unit" else data.factors
        targets = torch.as_tensor(goal.astype(np.float32))
        repeat = config.windows_per_song
        # one prediction per window, or with song pooling one per song (its windows' mean)
        per_row = 1 if config.song_pooling else repeat
        k = data.factors.shape[1]
        if config.objective == "wpe":
            wpe = WPELoss(data.user_factors, data.confidence)

            def factor_loss(predicted, rows):
                return wpe(predicted, rows)
        else:

            def factor_loss(predicted, rows):
                return mse_loss(predicted, targets[rows])

        song_tags = None
        if config.tag_weight > 0:
            if not data.tags:
                raise ParameterError(
                    "tag_weight > 0 trains on the warm songs' tags, and there are none: "
                    "ingest them with `coldtune tags ingest`, or set tag_weight=0"
                )
            self.tags_, presence = tag_targets(data.tags, songs, min_songs=config.min_tag_songs)
            if not self.tags_:
                raise ParameterError(
                    f"no tag is held by {config.min_tag_songs} warm songs or more: lower "
                    "min_tag_songs, or set tag_weight=0"
                )
            song_tags = torch.as_tensor(presence)

        def loss(predicted, rows):
            rows = np.repeat(rows, per_row)
            predicted = predicted.float().cpu()
            value = factor_loss(predicted[:, :k], rows)
            if song_tags is not None:
                value = value + config.tag_weight * nn.functional.binary_cross_entropy_with_logits(
                    predicted[:, k:], song_tags[rows]
                )
            return value

        def make_batch(rows: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
            return window_batch(store, songs[np.repeat(rows, repeat)], rng=rng)

        val_rows, _ = split_rows(len(songs), fraction=loop.validation_fraction, seed=loop.seed)
        ranking = RankingValidation(data.user_factors, data.confidence, val_rows)
        score = None
        selection = config.selection if len(val_rows) >= config.min_ranking_songs else "loss"
        if selection != "loss":
            val_clips = [np.asarray(store.song(song, "mel")) for song in songs[val_rows]]

            def score(rows: np.ndarray) -> float:
                assert np.array_equal(rows, val_rows), "the loop's split is the read-out's"
                predicted = self._outputs(clip_embeddings(self.network_, val_clips))
                return ranking(predicted)[selection]

        trained = SongPooling(self.network_, repeat) if config.song_pooling else self.network_
        if song_tags is not None:
            trained = WithTags(trained, self.network_.head[-1], song_tags.shape[1])
        result = train_loop(
            trained,
            n_items=len(songs),
            make_batch=make_batch,
            objective=loss,
            config=loop,
            checkpoint=data.checkpoint,
            identity={"model": config.to_dict(), "data": data.fingerprint()},
            score=score,
        )
        self.network_.eval()
        report = fit_report(result)
        self.validation_ = (val_rows, ranking)  # for a caller that compares read-outs
        self.history_ = result.history
        self.readout_ = None
        if config.readout == "ridge":
            report["readout"] = self._fit_readout(data, val_rows, ranking, config)
        if is_main_process():
            rates = [r["items_per_s"] for r in result.history]
            report["windows_per_s"] = round(repeat * float(np.median(rates)), 1) if rates else 0.0
        report["selection"] = selection  # "loss" where too few validation songs
        if song_tags is not None:
            report["tags"] = len(self.tags_)
        self.fit_report_ = {"objective": config.objective, "precision": precision, **report}
        return self

    def _outputs(self, embeddings: np.ndarray) -> np.ndarray:
        """The network's own factors from mean embeddings (its linear output layer)."""
        with torch.no_grad():
            device = next(self.network_.parameters()).device
            out = self.network_.head[-1](torch.as_tensor(embeddings, device=device))
        return out.float().cpu().numpy()

    def _fit_readout(self, data: TrainingSet, val_rows, ranking, config: CNNConfig) -> dict:
        """Ridge from mean embeddings to factors: the regularisation chosen on the
        validation songs (by `selection`), then refitted on every warm song."""
        store, songs = data.features, data.song_ids
        E = clip_embeddings(self.network_, [np.asarray(store.song(s, "mel")) for s in songs])
        Y = data.factors.astype(np.float32)
        train = np.setdiff1d(np.arange(len(songs)), val_rows)
        figures = {}
        for alpha in config.readout_alphas:
            predicted = RidgeReadout().fit(E[train], Y[train], alpha).predict(E[val_rows])
            mse = float(np.mean(((predicted - Y[val_rows]) ** 2).sum(axis=1)))
            figures[alpha] = {**ranking(predicted), "loss": -mse}
        alpha = max(figures, key=lambda a: figures[a][config.selection])
        self.readout_ = RidgeReadout().fit(E, Y, alpha)
        return {
            "alpha": alpha,
            "validation": {
                str(a): {m: round(v, 5) for m, v in f.items()} for a, f in figures.items()
            },
            "network_validation": {
                m: round(v, 5) for m, v in ranking(self._outputs(E[val_rows])).items()
            },
        }

    def predict(self, songs: Sequence[SongFeatures]) -> np.ndarray:
        """Factors [shape=(len(songs), factors)] float32: each song's mean over its
        consecutive 3 s windows of log-mel frames (through the ridge read-out if any)."""
        embeddings = clip_embeddings(self.network_, frames_of(songs, "mel"))
        if getattr(self, "readout_", None) is not None:
            return self.readout_.predict(embeddings)
        return self._outputs(embeddings).astype(np.float32)

    def save(self, folder: Path) -> None:
        arrays = {
            f"network.{k}": v.detach().cpu().numpy() for k, v in self.network_.state_dict().items()
        }
        state = {"network": self.network_config_.to_dict()}
        if getattr(self, "readout_", None) is not None:
            arrays |= self.readout_.arrays()
            state["readout_alpha"] = self.readout_.alpha_
        save_model(folder, self.name, self.config, arrays, state)

    @classmethod
    def load(cls, folder: Path) -> CNN:
        config, arrays, state = read_model_files(folder, CNNConfig)
        model = cls(config)
        model.network_config_ = NetworkConfig(**state["network"]).validate()
        model.network_ = build_cnn(model.network_config_)
        model.network_.load_state_dict(network_state(arrays))
        model.network_.eval()
        model.readout_ = None
        if "readout.weights" in arrays:
            model.readout_ = RidgeReadout.from_arrays(arrays, state.get("readout_alpha"))
        return model
