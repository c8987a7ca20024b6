"""Metric learning to rank (section 4.1, reference [21]: McFee, Barrington, Lanckriet,
"Learning content similarity for music recommendation", 2012).

A metric W = L^T L on a song's bag-of-words features (after PCA) is learned from usage:
for a query song, songs that share its listeners must be more similar than songs that do
not. The loss is MLR's AUC loss, the share of (relevant, irrelevant) pairs ranked the
wrong way, relaxed to a hinge and minimised by stochastic sub-gradients on sampled
triplets (query q, relevant r, irrelevant n):

    s(i, j) = x_i^T W x_j = (L x_i) . (L x_j)
    loss = mean max(0, margin - s(q, r) + s(q, n))

The relevant songs of q are its `neighbours` nearest warm songs by cosine similarity of
their listener sets (binary columns of the training plays), as in [21].

A user's score for a cold song j is the mean similarity to the songs the user played,
which is an inner product, so MLR's scores go through the same evaluation as factors:

    mean_i s(i, j) = m_u . (L x_j),   m_u = mean_i L x_i over the user's played songs.

Why the bilinear similarity and not MLR's Mahalanobis distance: the mean of minus
squared distances is 2 m_u . L x_j - ||L x_j||^2 + const, and the -||L x_j||^2 term,
the same for every user, favours songs near the centre of the catalogue for everyone.
On the default demo world that took the cold-song AUC to chance (0.497), against 0.614
for the similarity (same features, 50 dimensions; docs/models.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from coldtune.content.base import (
    SongFeatures,
    TrainingSet,
    read_model_files,
    save_model,
)
from coldtune.content.bow import WhitenedBag
from coldtune.content.configs import MLRConfig
from coldtune.content.training import fit_report, network_state, train_config, train_loop
from coldtune.errors import ParameterError, WorkspaceError


def listener_neighbours(plays: sp.spmatrix, k: int, *, block: int = 2048) -> np.ndarray:
    """Each song's k nearest songs by cosine similarity of their listener sets.

    plays : [shape=(n_users, n_songs)], any values; only which pairs are played counts.
    Returns int64 [shape=(n_songs, k)], -1 where a song has fewer than k songs sharing a
    listener. Ties are broken by the lower song index, so the result is deterministic.
    """
    listened = sp.csc_matrix(plays, dtype=np.float32, copy=True)
    listened.eliminate_zeros()  # a stored zero is no play
    listened.data[:] = 1.0
    n_songs = listened.shape[1]
    norms = np.sqrt(np.asarray(listened.sum(axis=0), dtype=np.float64).ravel())
    norms[norms == 0] = 1.0
    by_song = listened.T.tocsr()
    out = np.full((n_songs, k), -1, dtype=np.int64)
    for lo in range(0, n_songs, block):
        hi = min(lo + block, n_songs)
        # shared listeners of songs lo..hi with every song, in blocks so memory stays
        # (block x n_songs) however many songs there are
        shared = (by_song[lo:hi] @ listened).toarray().astype(np.float64)  # exact counts
        cosine = shared / np.outer(norms[lo:hi], norms)
        cosine[np.arange(hi - lo), np.arange(lo, hi)] = -1.0  # a song is not its neighbour
        # stable sort on -cosine: the lower index wins a tie
        order = np.argsort(-cosine, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(cosine, order, axis=1)
        out[lo:hi] = np.where(best > 0, order, -1)
    return out


class Metric(torch.nn.Module):
    """x -> L x; the similarity of two songs is the inner product of their L x."""

    def __init__(self, dims_in: int, dims_out: int):
        super().__init__()
        self.project = torch.nn.Linear(dims_in, dims_out, bias=False)
        with torch.no_grad():
            if dims_out == dims_in:  # start from the plain inner product of the input
                self.project.weight.copy_(torch.eye(dims_out))
            else:  # a random projection keeps inner products on average
                torch.nn.init.normal_(self.project.weight, std=dims_in**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x)


def triplet_auc_loss(embedded: torch.Tensor, margin: float) -> torch.Tensor:
    """MLR's AUC loss relaxed to a hinge; `embedded` stacks [L x_q; L x_r; L x_n]."""
    query, relevant, irrelevant = embedded.chunk(3)
    return torch.relu(margin - (query * relevant).sum(1) + (query * irrelevant).sum(1)).mean()


def sample_triplets(
    queries: np.ndarray, neighbours: np.ndarray, n_songs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A relevant song (one of the query's neighbours) and an irrelevant one (any other
    song that is neither the query nor a neighbour) for each query."""
    choices = neighbours[queries]
    valid = (choices >= 0).sum(axis=1)
    if (valid == 0).any():
        raise ParameterError("every query song needs at least one neighbour")
    relevant = choices[np.arange(len(queries)), rng.integers(0, valid)]
    irrelevant = rng.integers(0, n_songs, len(queries))
    for _ in range(100):  # a clash is rare (neighbours / n_songs): redraw those
        clash = (irrelevant == queries) | (choices == irrelevant[:, None]).any(axis=1)
        if not clash.any():
            break
        irrelevant[clash] = rng.integers(0, n_songs, int(clash.sum()))
    return relevant, irrelevant


def usage_factors(
    embedded_songs: np.ndarray, plays: sp.spmatrix, embedded_new: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Factors whose inner products are each user's mean similarity to the new songs.

    embedded_songs : L x_i of the songs `plays` covers [shape=(n_songs, r)].
    plays : [shape=(n_users, n_songs)]; which songs each user played (counts ignored).
    embedded_new : L x_j of the songs to score [shape=(n_new, r)].
    Returns (user factors m_u, song factors L x_j); a user with no plays scores 0.
    """
    played = sp.csr_matrix(plays, dtype=np.float64, copy=True)
    played.eliminate_zeros()  # a stored zero is no play
    played.data[:] = 1.0
    counts = np.asarray(played.sum(axis=1)).ravel()
    means = (played @ embedded_songs) / np.maximum(counts, 1)[:, None]
    return means.astype(np.float32), np.asarray(embedded_new, dtype=np.float32)


def distance_users(means: np.ndarray) -> np.ndarray:
    """User factors [2 m_u, -1] whose inner products with `distance_songs` are the mean
    of minus the squared distance to the user's songs, up to a constant per user:
    mean_i -||a_i - b||^2 = 2 m_u . b - ||b||^2 - mean_i ||a_i||^2."""
    ones = np.ones((len(means), 1), dtype=np.float32)
    return np.hstack([2 * np.asarray(means, dtype=np.float32), -ones])


def distance_songs(embedded: np.ndarray) -> np.ndarray:
    """Song factors [b, ||b||^2] for `distance_users`."""
    embedded = np.asarray(embedded, dtype=np.float32)
    return np.hstack([embedded, (embedded**2).sum(axis=1, keepdims=True)])


class MLR:
    """`mlr`: predict(songs' MFCC frames) -> L x_j, scored against `user_factors_`
    (each user's mean L x_i over the warm songs they played), not WMF's users."""

    name = "mlr"
    reads = "mfcc"

    def __init__(self, config: MLRConfig = MLRConfig()):
        self.config = config

    def fit(self, data: TrainingSet) -> MLR:
        config = self.config.validate()
        loop = train_config(config)
        self.inputs_, features = WhitenedBag.learn(data, config)
        features = torch.as_tensor(features)
        near = listener_neighbours(data.confidence, config.neighbours)
        queries = np.flatnonzero((near >= 0).any(axis=1))  # songs with a co-listened song
        if len(queries) < 2:
            raise WorkspaceError("fewer than 2 warm songs share listeners: nothing to learn from")
        torch.manual_seed(config.seed)
        self.metric_ = Metric(features.shape[1], config.dims or features.shape[1])

        def make_batch(rows: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
            query = queries[rows]
            relevant, irrelevant = sample_triplets(query, near, len(features), rng)
            return features[np.concatenate([query, relevant, irrelevant])]

        result = train_loop(
            self.metric_,
            n_items=len(queries),
            make_batch=make_batch,
            objective=lambda embedded, _rows: triplet_auc_loss(embedded, config.margin),
            config=loop,
            checkpoint=data.checkpoint,
            identity={"model": config.to_dict(), "data": data.fingerprint()},
            device="cpu",
        )
        self.metric_.eval()
        with torch.no_grad():
            warm_embedded = self.metric_(features).numpy().astype(np.float64)
        # the users' played songs are the warm songs' training plays; cold plays never enter
        self.user_factors_, _ = usage_factors(warm_embedded, data.confidence, warm_embedded[:0])
        if config.similarity == "distance":
            self.user_factors_ = distance_users(self.user_factors_)
        self.fit_report_ = {
            "query_songs": len(queries),
            "pca_components": int(features.shape[1]),
            **fit_report(result),
        }
        return self

    def predict(self, songs: Sequence[SongFeatures]) -> np.ndarray:
        """L x_j [shape=(len(songs), dims)] float32 (with similarity "distance", then
        ||L x_j||^2 as one more column): inner products with `user_factors_` are the
        users' mean similarities to the songs (up to a constant per user)."""
        with torch.no_grad():
            embedded = self.metric_(torch.as_tensor(self.inputs_.transform(songs)))
        embedded = embedded.numpy().astype(np.float32)
        return distance_songs(embedded) if self.config.similarity == "distance" else embedded

    def save(self, folder: Path) -> None:
        arrays = self.inputs_.arrays()
        arrays["network.project.weight"] = self.metric_.project.weight.detach().numpy()
        arrays["user_factors"] = self.user_factors_
        save_model(folder, self.name, self.config, arrays)

    @classmethod
    def load(cls, folder: Path) -> MLR:
        config, arrays, _ = read_model_files(folder, MLRConfig)
        model = cls(config)
        model.inputs_ = WhitenedBag.from_arrays(arrays, config)
        weight = arrays["network.project.weight"]
        model.metric_ = Metric(weight.shape[1], weight.shape[0])
        model.metric_.load_state_dict(network_state(arrays))
        model.metric_.eval()
        model.user_factors_ = arrays["user_factors"]
        return model
