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

from dataclasses import asdict, dataclass

import numpy as np

from coldtune.errors import ParameterError


@dataclass(frozen=True)
class BowConfig:
    """Settings of the bag-of-words models, saved beside their predictions."""

    words: int = 4000  # k-means codebook size (the paper's 4,000)
    kmeans_iterations: int = 20
    kmeans_restarts: int = 1  # k-means runs from other random starts; the best is kept
    frames_per_song: int = 256  # frames of each warm song sampled to learn the codebook
    variance: float = 0.95  # PCA keeps this share of the variance
    alphas: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # ridge candidates
    validation_fraction: float = 0.1  # warm songs held out to choose alpha
    seed: int = 0

    def validate(self) -> BowConfig:
        if self.words < 2:
            raise ParameterError(f"words must be >= 2, got {self.words!r}")
        if not 0 < self.variance <= 1:
            raise ParameterError(f"variance must be in (0, 1], got {self.variance!r}")
        if not 0 < self.validation_fraction < 1:
            raise ParameterError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            )
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class BagOfWords:
    """MFCC frames -> word frequencies [shape=(words,)], with a k-means codebook."""

    def __init__(self, config: BowConfig = BowConfig()):
        self.config = config.validate()

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

    # the settings that decide the codebook (PCA and ridge settings do not)
    CODEBOOK_FIELDS = ("words", "kmeans_iterations", "kmeans_restarts", "frames_per_song", "seed")

    def save(self, path) -> None:
        """Write the standardisation and codebook (npz), atomically."""
        from coldtune.workspace import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, mean=self.mean_, scale=self.scale_, codebook=self.codebook_)

    @classmethod
    def load(cls, path, config: BowConfig) -> BagOfWords:
        bag = cls(config)
        with np.load(path, allow_pickle=False) as saved:
            bag.mean_, bag.scale_ = saved["mean"], saved["scale"]
            bag.codebook_ = saved["codebook"]
        if bag.codebook_.shape[0] != config.words:
            raise ParameterError(
                f"{path}: codebook has {bag.codebook_.shape[0]} words, config says {config.words}"
            )
        return bag

    def transform(self, songs_frames: list[np.ndarray]) -> np.ndarray:
        """Word frequencies of each song [shape=(n_songs, words)]."""
        import faiss

        index = faiss.IndexFlatL2(self.codebook_.shape[1])
        index.add(self.codebook_)
        out = np.zeros((len(songs_frames), self.config.words), dtype=np.float32)
        for i, frames in enumerate(songs_frames):
            data = ((frames.astype(np.float32) - self.mean_) / self.scale_).astype(np.float32)
            _, words = index.search(np.ascontiguousarray(data), 1)
            out[i] = np.bincount(words[:, 0], minlength=self.config.words) / len(frames)
        return out


class PCA:
    """Principal components keeping `variance` of the variance (SVD of centred data)."""

    def __init__(self, variance: float = 0.95):
        self.variance = variance

    def fit(self, X: np.ndarray) -> PCA:
        self.mean_ = X.mean(axis=0)
        _, singular, components = np.linalg.svd(X - self.mean_, full_matrices=False)
        explained = np.cumsum(singular**2) / max(float(np.sum(singular**2)), 1e-12)
        keep = int(np.searchsorted(explained, self.variance) + 1)
        self.components_ = components[: min(keep, len(components))]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) @ self.components_.T


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


def _ridge(Z: np.ndarray, Y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights [shape=(dims + 1, k)] of min ||[Z 1] W - Y||^2 + alpha ||W without bias||^2."""
    design = np.hstack([Z, np.ones((len(Z), 1))])
    penalty = alpha * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    return np.linalg.solve(design.T @ design + penalty, design.T @ Y)


def _affine(Z: np.ndarray, W: np.ndarray) -> np.ndarray:
    return Z @ W[:-1] + W[-1]
