"""Bag-of-words baselines of section 4.1: MFCC frames -> k-means words -> word counts
-> PCA -> linear regression onto the WMF song factors.

    "We used the following procedure: MFCCs [...] were computed and vector-quantised
    with K-means (4000 words), giving a bag-of-words representation per song. [...] The
    dimensionality was reduced with PCA, keeping 95% of the variance, and linear
    regression [...] was used to predict the latent factors." (section 4.1, paraphrased)

The codebook is learned with faiss's k-means on frames of the warm songs only, after
standardising each MFCC coefficient (the 39 dimensions span very different ranges: c0
is in the hundreds, second differences near zero). A song's representation is its word
frequencies (counts divided by its frames, so clip length does not matter).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coldtune.content.base import (
    SongFeatures,
    TrainingSet,
    frames_of,
    read_model_files,
    save_model,
    unit_rows,
)
from coldtune.content.configs import BowConfig, BowLinearConfig
from coldtune.errors import ParameterError
from coldtune.workspace import atomic_path


class BagOfWords:
    """MFCC frames -> word frequencies [shape=(words,)], with a k-means codebook."""

    def __init__(self, config: BowConfig = BowConfig()):
        self.config = config.validate().bow()

    def fit(self, songs_frames: list[np.ndarray]) -> BagOfWords:
        """Learn the standardisation and the codebook from frames [shape=(frames, dims)]."""
        import faiss

        rng = np.random.default_rng(self.config.seed)
        sample = []
        for frames in songs_frames:
            take = min(len(frames), self.config.frames_per_song)
            sample.append(frames[rng.choice(len(frames), take, replace=False)])
        data = np.concatenate(sample).astype(np.float32)
        if len(data) < self.config.words:
            raise ParameterError(
                f"{len(data)} frames cannot make {self.config.words} words; lower --words "
                "or raise frames_per_song"
            )
        self.mean_ = data.mean(axis=0)
        self.scale_ = data.std(axis=0) + 1e-6
        data = (data - self.mean_) / self.scale_
        kmeans = faiss.Kmeans(
            data.shape[1],
            self.config.words,
            niter=self.config.kmeans_iterations,
            seed=self.config.seed,
            nredo=self.config.kmeans_restarts,
            max_points_per_centroid=10_000,  # use every sampled frame
        )
        kmeans.train(np.ascontiguousarray(data))
        self.codebook_ = kmeans.centroids.copy()
        return self

    def save(self, path) -> None:
        """Write the standardisation and codebook (npz), atomically."""
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **self.arrays(prefix=""))

    def arrays(self, prefix: str = "bag.") -> dict[str, np.ndarray]:
        return {
            prefix + "mean": self.mean_,
            prefix + "scale": self.scale_,
            prefix + "codebook": self.codebook_,
        }

    @classmethod
    def from_arrays(cls, arrays: dict, config: BowConfig, prefix: str = "bag.") -> BagOfWords:
        bag = cls(config)
        bag.mean_, bag.scale_ = arrays[prefix + "mean"], arrays[prefix + "scale"]
        bag.codebook_ = arrays[prefix + "codebook"]
        if bag.codebook_.shape[0] != bag.config.words:
            raise ParameterError(
                f"codebook has {bag.codebook_.shape[0]} words, config says {bag.config.words}"
            )
        return bag

    @classmethod
    def load(cls, path, config: BowConfig) -> BagOfWords:
        with np.load(path, allow_pickle=False) as saved:
            try:
                return cls.from_arrays(dict(saved), config, prefix="")
            except ParameterError as error:
                raise ParameterError(f"{path}: {error}") from None

    def transform(self, songs_frames: list[np.ndarray]) -> np.ndarray:
        """Word frequencies of each song [shape=(n_songs, words)]."""
        import faiss

        index = faiss.IndexFlatL2(self.codebook_.shape[1])
        index.add(self.codebook_)
        n_words = self.config.words
        out = np.zeros((len(songs_frames), n_words), dtype=np.float32)
        lo = 0
        while lo < len(songs_frames):  # songs in batches of about 2^16 frames, one search each
            hi, rows = lo, 0
            while hi < len(songs_frames) and (hi == lo or rows + len(songs_frames[hi]) <= 1 << 16):
                rows += len(songs_frames[hi])
                hi += 1
            batch = songs_frames[lo:hi]
            data = np.concatenate([f.astype(np.float32) for f in batch])
            data = ((data - self.mean_) / self.scale_).astype(np.float32)
            _, words = index.search(np.ascontiguousarray(data), 1)
            lengths = np.array([len(f) for f in batch])
            song = np.repeat(np.arange(hi - lo), lengths)
            counts = np.bincount(song * n_words + words[:, 0], minlength=(hi - lo) * n_words)
            out[lo:hi] = counts.reshape(hi - lo, n_words) / lengths[:, None]
            lo = hi
        return out


SCATTER_ROWS = 8192
"""Songs centred at a time for PCA's scatter matrix (8,192 x 4,000 words: 262 MB)."""


class PCA:
    """Principal components keeping `variance` of the variance of the centred data.

    With more songs than words (every world but the smallest) the components are the
    eigenvectors of the words' scatter matrix Xc^T Xc, the right singular vectors of
    Xc: one matrix product and a symmetric eigendecomposition of words x words, where
    an SVD of the songs x words matrix took most of bow-linear's time at paper size
    (docs/benchmarks.md, "PCA by the scatter matrix"). Otherwise the SVD itself."""

    def __init__(self, variance: float = 0.95):
        self.variance = variance

    def fit(self, X: np.ndarray) -> PCA:
        self.mean_ = X.mean(axis=0)
        if X.shape[0] >= X.shape[1]:
            # eigh returns ascending eigenvalues: the largest first, as the SVD orders them
            power, vectors = np.linalg.eigh(self._scatter(X))
            power = np.clip(power[::-1], 0.0, None)
            components = vectors[:, ::-1].T.astype(np.result_type(X.dtype, np.float32))
        else:
            _, singular, components = np.linalg.svd(X - self.mean_, full_matrices=False)
            power = singular**2
        explained = np.cumsum(power) / max(float(np.sum(power)), 1e-12)
        keep = int(np.searchsorted(explained, self.variance) + 1)
        components = components[: min(keep, len(components))]
        # each component's largest entry positive (scikit-learn's convention): the signs
        # an SVD or an eigensolver leaves are arbitrary, and the torch models trained on
        # the projections (bow-mlp, mlr) would otherwise depend on the solver
        largest = components[np.arange(len(components)), np.abs(components).argmax(axis=1)]
        signs = np.where(largest < 0, -1, 1).astype(components.dtype)
        self.components_ = np.ascontiguousarray(components * signs[:, None])
        return self

    def _scatter(self, X: np.ndarray) -> np.ndarray:
        """Xc^T Xc in float64, centred SCATTER_ROWS songs at a time: memory for X and
        one part of it, not a centred copy of the whole (Table 3's 337,818 warm songs x
        4,000 words are 5.4 GB of float32 frequencies). Float64 because the product
        squares the data's condition: in float32 the components near the 95% cut-off
        came out 1% off (docs/benchmarks.md), where the SVD's are within 2e-5."""
        scatter = np.zeros((X.shape[1], X.shape[1]))
        for lo in range(0, X.shape[0], SCATTER_ROWS):
            part = (X[lo : lo + SCATTER_ROWS] - self.mean_).astype(np.float64, copy=False)
            scatter += part.T @ part
        return scatter

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) @ self.components_.T

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {prefix + "mean": self.mean_, prefix + "components": self.components_}

    @classmethod
    def from_arrays(cls, arrays: dict, variance: float, prefix: str) -> PCA:
        pca = cls(variance)
        pca.mean_, pca.components_ = arrays[prefix + "mean"], arrays[prefix + "components"]
        return pca


class PCARidge:
    """PCA keeping `variance` of the variance, then ridge regression onto the factors,
    its regularisation chosen on a validation split of the training songs."""

    def __init__(self, config: BowConfig = BowConfig()):
        self.config = config.validate()

    def fit(self, X: np.ndarray, Y: np.ndarray) -> PCARidge:
        rng = np.random.default_rng(self.config.seed)
        n = len(X)
        order = rng.permutation(n)
        n_val = max(1, int(round(self.config.validation_fraction * n)))
        val, train = order[:n_val], order[n_val:]
        self._fit_pca(X[train])
        Z_train, Z_val = self._project(X[train]), self._project(X[val])
        errors = []
        for alpha in self.config.alphas:
            W = _ridge(Z_train, Y[train], alpha)
            errors.append(float(np.mean((_affine(Z_val, W) - Y[val]) ** 2)))
        self.alpha_ = float(self.config.alphas[int(np.argmin(errors))])
        self.validation_mse_ = dict(zip(map(float, self.config.alphas), errors, strict=True))
        # refit on every training song with the chosen regularisation
        self._fit_pca(X)
        self.weights_ = _ridge(self._project(X), Y, self.alpha_)
        return self

    def _fit_pca(self, X: np.ndarray) -> None:
        self.pca_ = PCA(self.config.variance).fit(X)
        self.components_ = self.pca_.components_

    def _project(self, X: np.ndarray) -> np.ndarray:
        return self.pca_.transform(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return _affine(self._project(X), self.weights_).astype(np.float32)

    def arrays(self, prefix: str = "ridge.") -> dict[str, np.ndarray]:
        return self.pca_.arrays(prefix) | {prefix + "weights": self.weights_}

    @classmethod
    def from_arrays(cls, arrays: dict, config: BowConfig, prefix: str = "ridge.") -> PCARidge:
        regression = cls(config)
        regression.pca_ = PCA.from_arrays(arrays, config.variance, prefix)
        regression.components_ = regression.pca_.components_
        regression.weights_ = arrays[prefix + "weights"]
        return regression


class Whitening:
    """Section 4.1's features for the torch models: word frequencies -> PCA keeping
    `variance` -> each component scaled to unit variance on the warm songs (the
    components differ in scale by orders; whitened, every one starts with equal weight)."""

    def __init__(self, variance: float):
        self.variance = variance

    def fit(self, words: np.ndarray) -> Whitening:
        self.pca_ = PCA(self.variance).fit(words)
        self.scale_ = self.pca_.transform(words).std(axis=0) + 1e-8
        return self

    def transform(self, words: np.ndarray) -> np.ndarray:
        return (self.pca_.transform(words) / self.scale_).astype(np.float32)

    def arrays(self, prefix: str = "whitening.") -> dict[str, np.ndarray]:
        return self.pca_.arrays(prefix) | {prefix + "scale": self.scale_}

    @classmethod
    def from_arrays(cls, arrays: dict, variance: float, prefix: str = "whitening.") -> Whitening:
        whitening = cls(variance)
        whitening.pca_ = PCA.from_arrays(arrays, variance, prefix)
        whitening.scale_ = arrays[prefix + "scale"]
        return whitening


def _ridge(Z: np.ndarray, Y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights [shape=(dims + 1, k)] of min ||[Z 1] W - Y||^2 + alpha ||W without bias||^2."""
    design = np.hstack([Z, np.ones((len(Z), 1))])
    penalty = alpha * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    return np.linalg.solve(design.T @ design + penalty, design.T @ Y)


def _affine(Z: np.ndarray, W: np.ndarray) -> np.ndarray:
    return Z @ W[:-1] + W[-1]


def bag_for(data: TrainingSet, config: BowConfig) -> tuple[BagOfWords, np.ndarray]:
    """The training set's bag of words and its songs' word frequencies: the shared,
    cached ones when `data.bow` has them, else learned here from the warm songs' MFCCs."""
    if data.bow is not None:
        return data.bow
    frames = frames_of(data.songs(), "mfcc")
    bag = BagOfWords(config).fit(frames)
    return bag, bag.transform(frames)


class WhitenedBag:
    """The inputs of `bow-mlp` and `mlr` (section 4.1): a song's word frequencies,
    PCA-whitened. `learn` fits both on the warm songs; `transform` applies them."""

    def __init__(self, bag: BagOfWords, whitening: Whitening):
        self.bag, self.whitening = bag, whitening

    @classmethod
    def learn(cls, data: TrainingSet, config) -> tuple[WhitenedBag, np.ndarray]:
        """(the inputs, the warm songs' whitened features) for a config with BowConfig's
        fields (BowMLPConfig, MLRConfig)."""
        bag, words = bag_for(data, config.bow())
        whitening = Whitening(config.variance).fit(words)
        return cls(bag, whitening), whitening.transform(words)

    def transform(self, songs: Sequence[SongFeatures]) -> np.ndarray:
        return self.whitening.transform(self.bag.transform(frames_of(songs, "mfcc")))

    def arrays(self) -> dict[str, np.ndarray]:
        return self.bag.arrays() | self.whitening.arrays()

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], config) -> WhitenedBag:
        return cls(
            BagOfWords.from_arrays(arrays, config.bow()),
            Whitening.from_arrays(arrays, config.variance),
        )


class BowLinear:
    """`bow-linear`, section 4.1: MFCC frames -> words -> PCA (95%) -> ridge -> factors.

    >>> model = BowLinear(BowConfig(words=500)).fit(training_set)
    >>> model.predict([{"mfcc": frames}])  # [shape=(1, factors)]
    """

    name = "bow-linear"
    reads = "mfcc"

    def __init__(self, config: BowLinearConfig = BowLinearConfig()):
        self.config = config

    def fit(self, data: TrainingSet) -> BowLinear:
        config = self.config.validate()
        self.bag_, words = bag_for(data, config)
        targets = unit_rows(data.factors) if config.target == "unit" else data.factors
        self.regression_ = PCARidge(config).fit(words, targets)
        self.fit_report_ = {
            "pca_components": int(self.regression_.components_.shape[0]),
            "alpha": self.regression_.alpha_,
            "validation_mse": self.regression_.validation_mse_,
        }
        return self

    def predict(self, songs: Sequence[SongFeatures]) -> np.ndarray:
        """Factors [shape=(len(songs), factors)] float32 of songs' MFCC frames."""
        return self.regression_.predict(self.bag_.transform(frames_of(songs, "mfcc")))

    def save(self, folder: Path) -> None:
        arrays = self.bag_.arrays() | self.regression_.arrays()
        save_model(folder, self.name, self.config, arrays, {"alpha": self.regression_.alpha_})

    @classmethod
    def load(cls, folder: Path) -> BowLinear:
        config, arrays, state = read_model_files(folder, BowLinearConfig)
        model = cls(config)
        model.bag_ = BagOfWords.from_arrays(arrays, config)
        model.regression_ = PCARidge.from_arrays(arrays, config)
        model.regression_.alpha_ = state.get("alpha")
        return model
