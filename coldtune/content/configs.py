"""The settings of every content model: one frozen dataclass each, saved as JSON beside
the model's weights and read back by `load`. They import neither torch nor faiss, so
the CLI builds `coldtune train MODEL --help` from them without loading either.

Each default says where it came from: the paper (section 4), Dieleman's 2014 write-up,
or a run on the default demo world recorded in docs/models.md.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, fields

from coldtune.errors import ParameterError

OBJECTIVES = ("mse", "wpe")  # eq. (4) and eq. (5); the losses are in objectives.py
OPTIMIZER_NAMES = ("adamw", "sgd-nesterov")
PRECISION_NAMES = ("auto", "fp32", "bf16")
ARCHITECTURE_NAMES = ("paper", "global-pooling", "small")
SELECTION_NAMES = ("loss", "auc", "map")  # coldtune.content.validation.SELECTIONS
READOUT_NAMES = ("network", "ridge")
TARGET_NAMES = ("factors", "unit")


class JSONConfig:
    """to_dict / from_dict for a frozen dataclass whose fields are JSON values (tuples
    are written as lists and read back as tuples)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(saved) - known)
        if unknown:
            raise ParameterError(
                f"{cls.__name__} has no setting {', '.join(map(repr, unknown))}; "
                f"it takes {', '.join(sorted(known))}"
            )
        hints = typing.get_type_hints(cls)
        values = {
            name: tuple(value) if isinstance(value, list) and _is_tuple(hints[name]) else value
            for name, value in saved.items()
        }
        return cls(**values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _is_tuple(hint) -> bool:
    return typing.get_origin(hint) is tuple or hint is tuple


def _at_least(config, minimum: int, *names: str) -> None:
    for name in names:
        if getattr(config, name) < minimum:
            raise ParameterError(f"{name} must be >= {minimum}, got {getattr(config, name)!r}")


def _one_of(value, allowed, what: str) -> None:
    if value not in allowed:
        raise ParameterError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass(frozen=True)
class BowConfig(JSONConfig):
    """Section 4.1's bag of words: MFCC frames -> k-means words -> frequencies -> PCA;
    `bow-linear`'s whole configuration (ridge regression onto the factors)."""

    words: int = 4000  # k-means codebook size (the paper's 4,000)
    kmeans_iterations: int = 20
    kmeans_restarts: int = 1  # k-means runs from other random starts; the best is kept
    frames_per_song: int = 256  # frames of each warm song sampled to learn the codebook
    variance: float = 0.95  # PCA keeps this share of the variance (the paper's 95%)
    alphas: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # ridge candidates
    validation_fraction: float = 0.1  # warm songs held out to choose alpha
    seed: int = 0

    # the settings that decide the codebook (PCA and ridge settings do not)
    CODEBOOK_FIELDS: typing.ClassVar[tuple[str, ...]] = (
        "words",
        "kmeans_iterations",
        "kmeans_restarts",
        "frames_per_song",
        "seed",
    )

    def validate(self):
        _at_least(self, 2, "words")
        _at_least(self, 1, "kmeans_iterations", "kmeans_restarts", "frames_per_song")
        if not 0 < self.variance <= 1:
            raise ParameterError(f"variance must be in (0, 1], got {self.variance!r}")
        if not 0 < self.validation_fraction < 1:
            raise ParameterError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            )
        if not self.alphas:
            raise ParameterError("alphas must name at least one ridge regularisation")
        return self

    def bow(self) -> BowConfig:
        """The bag-of-words part of a model's settings (what the shared cache is keyed by)."""
        return BowConfig(**{f.name: getattr(self, f.name) for f in fields(BowConfig)})


@dataclass(frozen=True)
class TrainingSettings:
    """The shared training loop's settings (coldtune.content.training.TrainConfig)."""

    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 10  # epochs without a better validation loss before stopping

    def validate_training(self) -> None:
        _one_of(self.optimizer, OPTIMIZER_NAMES, "optimizer")
        _at_least(self, 1, "batch_size", "max_epochs", "patience")
        if not self.learning_rate > 0:
            raise ParameterError(f"learning_rate must be > 0, got {self.learning_rate!r}")


DEFAULT_DROPOUT = {"mse": 0.5, "wpe": 0.5}
"""bow-mlp's dropout when none is given. With a few thousand warm songs, 1,000 hidden
units overfit within a few epochs; on the default demo world's warm validation songs
(3 seeds) dropout 0.5 scored higher than 0 with either objective (docs/models.md; WPE
had 0 until session 13, a choice made on cold songs)."""


@dataclass(frozen=True)
class BowLinearConfig(BowConfig):
    """bow-linear's settings: the bag of words and what its ridge regresses onto."""

    # "unit": the factors scaled to unit norm (Dieleman 2014; CNNConfig.target): the ridge
    # then fits each song's direction, not its length, which follows how much the song
    # was played, something a bag of frames cannot hear
    target: str = "factors"

    def validate(self):
        BowConfig.validate(self)
        _one_of(self.target, TARGET_NAMES, "target")
        return self


@dataclass(frozen=True)
class BowMLPConfig(BowConfig, TrainingSettings):
    """Section 4.1's multilayer perceptron on whitened BoW-PCA features."""

    hidden: int = 1000  # the paper's 1,000 ReLU units
    dropout: float | None = None  # None: DEFAULT_DROPOUT of the objective
    objective: str = "mse"

    def validate(self):
        BowConfig.validate(self)
        self.validate_training()
        _one_of(self.objective, OBJECTIVES, "objective")
        _at_least(self, 1, "hidden")
        if not 0 <= self.resolved_dropout < 1:
            raise ParameterError(f"dropout must be in [0, 1), got {self.dropout!r}")
        return self

    @property
    def resolved_dropout(self) -> float:
        return DEFAULT_DROPOUT.get(self.objective, 0.0) if self.dropout is None else self.dropout


@dataclass(frozen=True)
class MLRConfig(BowConfig, TrainingSettings):
    """Section 4.1's metric learning to rank on whitened BoW-PCA features."""

    dims: int = 50  # rank of L; 0 keeps every PCA component
    neighbours: int = 10  # relevant songs per query: nearest by shared listeners
    margin: float = 1.0
    learning_rate: float = 3e-3
    batch_size: int = 256
    max_epochs: int = 100
    # how a user scores a song: the mean over their songs of the inner product in the
    # learned metric ("inner"), or of minus the squared distance ("distance")
    similarity: str = "inner"

    def validate(self):
        BowConfig.validate(self)
        self.validate_training()
        if self.similarity not in ("inner", "distance"):
            raise ParameterError(
                f"similarity must be 'inner' or 'distance', got {self.similarity!r}"
            )
        if self.dims < 0:
            raise ParameterError(f"dims must be >= 0 (0: every component), got {self.dims!r}")
        _at_least(self, 1, "neighbours")
        if not self.margin > 0:
            raise ParameterError(f"margin must be > 0, got {self.margin!r}")
        return self


@dataclass(frozen=True)
class CNNConfig(JSONConfig, TrainingSettings):
    """Section 4.2's convolutional networks on random 3 s log-mel windows.

    Defaults chosen on warm validation songs only (issue 14; docs/models.md, "Where the
    CNN's defaults come from"): the small global-pooling network with dropout 0.5, the
    epoch kept by the validation songs' ranking AUC. The learning rate and windows per
    song were first picked on cold songs; re-measured on validation songs, 1e-3 and 8
    windows did worse than 3e-4 and 4 for the small network, so they stay.
    """

    architecture: str = "small"  # paper, global-pooling (Dieleman 2014) or small (ours)
    objective: str = "mse"
    learning_rate: float = 3e-4
    batch_size: int = 32  # songs per batch; each brings windows_per_song windows
    max_epochs: int = 30
    # the validation songs' ranking AUC moves by up to 0.03 from epoch to epoch: 5 epochs
    # without a better one stopped a run whose AUC was still rising (docs/models.md)
    patience: int = 10
    # the paper: "did not yield any significant improvements"; Dieleman 2014 used it in
    # the dense layers, and with 1,440 training songs the small network needs it
    dropout: float = 0.5
    batch_norm: bool = False  # normalise each convolution's output over the batch
    windows_per_song: int = 4
    # train on the mean embedding of each song's windows_per_song windows (one target per
    # song, as prediction averages a clip's windows) instead of on each window alone
    song_pooling: bool = False
    weight_decay: float = 1e-4  # AdamW's decoupled decay (the loop's default before)
    # Polyak averaging of the weights (coldtune.content.training.TrainConfig.average): the
    # share of the average kept at each step; 0.99 remembers about 100 steps, 2 epochs of
    # the demo world. 0: the weights themselves
    average: float = 0.0
    # what keeps the best epoch and stops training: the validation songs' ranking AUC
    # ("auc", "map": warm songs held out, WMF's user factors; never a cold song) or the
    # validation loss ("loss", what every model used before)
    selection: str = "auc"
    # below this many validation songs a ranking figure is mostly noise (the small world's
    # 12 stopped training at epoch 2), so the epoch is kept by the validation loss; the
    # default world has 160, the paper-size one about 740 (a judgment, not a measurement)
    min_ranking_songs: int = 100
    # "ridge": after training, ridge from the songs' mean last hidden layer to their
    # factors, fitted on the warm songs, alpha chosen by `selection` on validation songs
    readout: str = "network"
    readout_alphas: tuple[float, ...] = (10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
    target: str = "factors"  # or "unit": unit-norm factor targets (Dieleman 2014); MSE only
    # weight of an auxiliary loss on the warm songs' tags (multi-label cross-entropy from
    # the last hidden layer; Last.fm tags held by at least min_tag_songs training songs):
    # the network is taught what the music is as well as who listens. 0: none. Cold
    # songs' tags are never read; prediction stays audio only.
    tag_weight: float = 0.0
    min_tag_songs: int = 10
    precision: str = "auto"  # bf16 where the CPU or GPU computes it natively, else fp32
    seed: int = 0

    def validate(self):
        self.validate_training()
        _one_of(self.architecture, ARCHITECTURE_NAMES, "architecture")
        _one_of(self.objective, OBJECTIVES, "objective")
        _one_of(self.precision, PRECISION_NAMES, "precision")
        _one_of(self.selection, SELECTION_NAMES, "selection")
        _one_of(self.readout, READOUT_NAMES, "readout")
        _one_of(self.target, TARGET_NAMES, "target")
        _at_least(self, 1, "windows_per_song")
        if not 0 <= self.dropout < 1:
            raise ParameterError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.weight_decay < 0:
            raise ParameterError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.tag_weight < 0:
            raise ParameterError(f"tag_weight must be >= 0, got {self.tag_weight!r}")
        _at_least(self, 1, "min_tag_songs")
        if not self.readout_alphas or min(self.readout_alphas) <= 0:
            raise ParameterError(
                f"readout_alphas must be positive regularisations, got {self.readout_alphas!r}"
            )
        if self.target == "unit" and self.objective != "mse":
            raise ParameterError(
                "target 'unit' scales the MSE targets; WPE (eq. 5) scores against the "
                "users' plays and takes no targets: use target 'factors' with it"
            )
        return self


@dataclass(frozen=True)
class MetadataConfig(JSONConfig):
    """Section 1.1's metadata reference: Last.fm tags (weight / 100) -> ridge."""

    vocabulary: int = 1000  # the tags most used on warm songs
    alphas: tuple[float, ...] = BowConfig.alphas
    validation_fraction: float = 0.1
    seed: int = 0

    def validate(self):
        _at_least(self, 1, "vocabulary")
        self.ridge().validate()
        return self

    def ridge(self) -> BowConfig:
        # every component: tags are few already
        return BowConfig(
            variance=1.0,
            alphas=self.alphas,
            validation_fraction=self.validation_fraction,
            seed=self.seed,
        )
