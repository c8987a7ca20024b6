"""Simulated listeners of the demo world: who plays which song, and how often.

The model (written out with every parameter in docs/demo-world.md):

    taste(u, i) = g * A(u, i) + (1 - g) * H(u, i)          (both standardised)
    P(u plays i) ~ popularity_i ** beta_u * exp(taste(u, i) / temperature)

A(u, i), what audio can reveal: a weighted sum over the song's audible attributes
(style, instrument family, tune type, meter class, tempo class, mode, register) of
log(K * theta_u[value]), where theta_u ~ Dirichlet(concentration) is user u's taste over
that attribute's K values. Each attribute's term is centred per user and scaled so that
its share of A's variance over a user's songs is `taste_shares[attribute]`. H(u, i), what
audio cannot reveal: loyalty to a few favourite artists and a hidden appeal of each song
(s_u * h_i). g = `audio_share` is the single knob of the "semantic gap" (section 1 of
the paper): 1 makes taste fully audible, 0 makes audio useless. Popularity (a power
law, hidden from audio too) is exposure rather than taste: whatever g, users come
across popular songs more often, with a user-level appetite beta_u for them, which
gives songs the Taste Profile's long tail.

User u plays n_u distinct songs, n_u from a log-normal (heavy tail, at least
`min_songs`, as the Taste Profile keeps users with 10 songs or more), drawn without
replacement with probability proportional to exp(score / temperature) (the Gumbel
top-k trick: one vectorised pass per block of users). Play counts are
1 + floor(log-normal) with a user-level intensity and a boost for the user's better
liked songs: heavy-tailed like the Taste Profile's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp

from coldtune.errors import ParameterError

# Share of each audible attribute in the audible part of taste: of the variance, over a
# user's songs, of A(u, i) (each attribute's term is scaled to these shares; attributes
# that go together, such as tune type and meter, add a covariance on top).
TASTE_SHARES: dict[str, float] = {
    "style": 0.10,
    "family": 0.10,  # instrument family
    "tune_type": 0.20,
    "meter_class": 0.15,  # duple, triple, compound duple, ...
    "tempo_class": 0.20,  # slow, medium, fast: note onsets per second
    "mode": 0.10,
    "register": 0.15,  # low, middle, high: the clip's median pitch
}
AUDIO_ATTRIBUTES = tuple(TASTE_SHARES)


@dataclass(frozen=True)
class ListenerConfig:
    users: int = 2000
    audio_share: float = 0.6  # g: how much of taste audio can reveal
    temperature: float = 0.35  # lower: users stick closer to their taste
    taste_concentration: float = 0.5  # Dirichlet concentration of theta_u (low: picky)
    favourite_artists: int = 3  # at most this many favourite artists per user
    artist_loyalty: float = 2.0  # score bonus of a favourite artist's songs (in H)
    popularity_exponent: float = 1.1  # Pareto tail of song popularity
    min_songs: int = 10  # the Taste Profile keeps users with at least 10 songs
    median_songs: float = 25.0  # median distinct songs per user
    activity_sigma: float = 0.8  # log-normal spread of songs per user (heavy tail)
    count_sigma: float = 1.0  # log-normal spread of play counts
    max_count: int = 5000
    taste_shares: dict[str, float] = field(default_factory=lambda: dict(TASTE_SHARES))

    def validate(self) -> ListenerConfig:
        if not 0.0 <= self.audio_share <= 1.0:
            raise ParameterError(f"audio_share must be in [0, 1], got {self.audio_share!r}")
        if self.users < 1:
            raise ParameterError(f"users must be >= 1, got {self.users!r}")
        if self.temperature <= 0:
            raise ParameterError(f"temperature must be > 0, got {self.temperature!r}")
        shares = self.taste_shares
        if not shares or min(shares.values()) < 0 or abs(sum(shares.values()) - 1) > 1e-6:
            raise ParameterError(f"taste_shares must be non-negative and sum to 1, got {shares!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Listeners:
    """Play counts (users x songs, CSR) and the hidden variables that made them."""

    plays: sp.csr_matrix
    hidden_users: dict[str, np.ndarray]
    hidden_songs: dict[str, np.ndarray]


def simulate_listeners(
    songs: dict[str, np.ndarray], config: ListenerConfig, rng: np.random.Generator
) -> Listeners:
    """songs: per song, integer codes of each attribute of `config.taste_shares`
    (values 0 .. K - 1) and of "artist"."""
    config.validate()
    missing = [a for a in [*config.taste_shares, "artist"] if a not in songs]
    if missing:
        raise ParameterError(f"songs lack the attributes {missing} that taste_shares names")
    n_songs = len(songs["artist"])
    n_users = config.users
    # ---- songs: popularity (power law) and hidden appeal
    popularity = rng.pareto(config.popularity_exponent, n_songs) + 1.0
    appeal = rng.standard_normal(n_songs)
    n_artists = int(songs["artist"].max()) + 1
    artist_popularity = np.bincount(songs["artist"], weights=popularity, minlength=n_artists)

    # ---- users
    thetas = {}
    for attribute in config.taste_shares:
        k = int(songs[attribute].max()) + 1
        thetas[attribute] = rng.dirichlet(np.full(k, config.taste_concentration), n_users)
    beta = rng.uniform(0.5, 1.5, n_users)  # appetite for popular songs (exposure)
    sensitivity = rng.normal(1.0, 0.3, n_users)  # to the hidden appeal
    n_favourites = rng.integers(1, config.favourite_artists + 1, n_users)
    favourites = np.full((n_users, config.favourite_artists), -1)
    artist_p = artist_popularity / artist_popularity.sum()
    for u in range(n_users):
        chosen = rng.choice(
            n_artists, size=min(n_favourites[u], n_artists), replace=False, p=artist_p
        )
        favourites[u, : len(chosen)] = chosen
    wanted = np.exp(
        np.log(config.median_songs) + config.activity_sigma * rng.standard_normal(n_users)
    )
    n_songs_u = np.clip(np.round(wanted), config.min_songs, max(config.min_songs, n_songs // 2))
    n_songs_u = np.minimum(n_songs_u, n_songs).astype(int)
    intensity = rng.normal(0.0, 0.6, n_users)

    # ---- scores and choices, a block of users at a time
    log_popularity = np.log(popularity)
    rows, cols, counts = [], [], []
    block = max(1, 4_000_000 // max(1, n_songs))
    # the scale of A and H is fixed on a first block, so that every block uses the same
    audio_scale = hidden_scale = None
    term_scale: dict[str, float] = {}
    for lo in range(0, n_users, block):
        users = np.arange(lo, min(lo + block, n_users))
        # each attribute's term, centred per user (a user-level constant changes no
        # choice) and scaled, on the first block, to its share of the audible taste
        audio = np.zeros((len(users), n_songs))
        for attribute, share in config.taste_shares.items():
            theta = thetas[attribute][users]
            term = np.log(theta.shape[1] * theta[:, songs[attribute]] + 1e-12)
            term -= term.mean(axis=1, keepdims=True)
            if attribute not in term_scale:
                term_scale[attribute] = term.std() or 1.0
            audio += np.sqrt(share) * term / term_scale[attribute]
        loyal = (songs["artist"][None, None, :] == favourites[users][:, :, None]).any(axis=1)
        hidden = config.artist_loyalty * loyal + sensitivity[users, None] * appeal[None, :]
        if audio_scale is None:
            audio_scale = (audio.mean(), audio.std() or 1.0)
            hidden_scale = (hidden.mean(), hidden.std() or 1.0)
        score = (
            config.audio_share * (audio - audio_scale[0]) / audio_scale[1]
            + (1 - config.audio_share) * (hidden - hidden_scale[0]) / hidden_scale[1]
        )
        exposure = beta[users, None] * log_popularity[None, :]
        keys = exposure + score / config.temperature + rng.gumbel(size=score.shape)
        for j, u in enumerate(users):
            n = n_songs_u[u]
            chosen = np.argpartition(-keys[j], n - 1)[:n]
            liked = (score[j, chosen] - score[j].mean()) / (score[j].std() or 1.0)
            draw = np.exp(intensity[u] + 0.5 * liked + config.count_sigma * rng.standard_normal(n))
            rows.append(np.full(n, u))
            cols.append(chosen)
            counts.append(np.minimum(1 + np.floor(draw), config.max_count))
    plays = sp.csr_matrix(
        (np.concatenate(counts).astype(np.int32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_users, n_songs),
    )
    hidden_users = {
        **{f"taste_{a}": thetas[a] for a in config.taste_shares},
        "popularity_appetite": beta,
        "appeal_sensitivity": sensitivity,
        "favourite_artists": favourites,
        "songs_wanted": n_songs_u,
        "play_intensity": intensity,
    }
    hidden_songs = {"popularity": popularity, "hidden_appeal": appeal}
    return Listeners(plays, hidden_users, hidden_songs)
