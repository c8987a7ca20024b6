"""The song map (Figure 1): t-SNE of the predicted usage patterns, as a PNG and a page.

    "we also visualized the distribution of predicted usage patterns in two dimensions
    using t-SNE [...]. Clusters of songs that appeal to the same audience seem to be
    preserved quite well, even though the latent factor vectors for all songs were
    predicted from audio." (section 5.3)

The usage pattern X y' of a song is never formed: its geometry is that of z = L^T y'
(see `coldtune.eval.similar`), and as songs are compared by the cosine of their
patterns, t-SNE runs on the unit-length z. Every song with audio is placed from its
predicted factors, warm songs included.

Writes W/results/map/: map.json (the coordinates), map.png (coloured by tags) and
map.html, a self-contained page (no network): hover shows artist and title, a click
plays the song's clip, which the page references relative to itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from coldtune.errors import ParameterError
from coldtune.threads import one_thread
from coldtune.workspace import atomic_path


@dataclass(frozen=True)
class MapConfig:
    """t-SNE's settings and the tags coloured; saved in map.json."""

    # lowered to (songs - 1) / 3 for few songs, as t-SNE needs
    perplexity: float = field(default=30.0, metadata={"help": "t-SNE perplexity."})
    seed: int = field(default=0, metadata={"help": "t-SNE seed."})
    # coloured in this order; empty: `default_colour_tags`
    tags: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Colour songs with this tag (repeat for more colours).", "flag": "--tag"},
    )

    def validate(self) -> MapConfig:
        if not self.perplexity > 1:
            raise ParameterError(f"perplexity must be > 1, got {self.perplexity!r}")
        return self


def tsne(embedding: np.ndarray, *, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE (scikit-learn, Barnes-Hut) of rows [shape=(n, d)] -> [shape=(n, 2)]."""
    from sklearn.manifold import TSNE

    n = len(embedding)
    if n < 4:
        raise ParameterError(f"a map needs at least 4 songs with audio, got {n}")
    perplexity = min(perplexity, (n - 1) / 3)
    model = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    with one_thread():  # 4x faster than two threads on 2 shared cores (coldtune.threads)
        return model.fit_transform(np.asarray(embedding, dtype=np.float64)).astype(np.float32)


def default_colour_tags(song_tags: list[set[str]], *, n: int = 4, max_share: float = 0.3):
    """Tags to colour when none is chosen: the most frequent ones carried by at most
    `max_share` of the songs (broader ones colour everything), taken greedily so that
    each new tag is mostly on songs no earlier one coloured (at most a third overlap)."""
    counts: dict[str, int] = {}
    for tags in song_tags:
        for tag in tags:
            counts[tag] = counts.get(tag, 0) + 1
    chosen: list[str] = []
    coloured: set[int] = set()
    for tag in sorted(counts, key=lambda t: (-counts[t], t)):
        if counts[tag] > max_share * len(song_tags) or counts[tag] < 2:
            continue
        songs = {i for i, tags in enumerate(song_tags) if tag in tags}
        if len(songs & coloured) <= len(songs) / 3:
            chosen.append(tag)
            coloured |= songs
        if len(chosen) == n:
            break
    return chosen


def relative_clip(catalogue, page: Path):
    def url(song_id: str) -> str | None:
        path = catalogue.clips.get(song_id)
        if path is None:
            return None
        return Path(os.path.relpath(Path(path).resolve(), page.parent.resolve())).as_posix()

    return url


PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
"""The same colours, in the same order, as web/map.js."""


def write_png(path: Path, xy, song_tags, colour_tags, cold, model_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 8), dpi=110)
    which = np.full(len(xy), -1)
    for c, tag in enumerate(colour_tags[: len(PALETTE)]):
        mine = np.array([tag in tags for tags in song_tags]) & (which < 0)
        which[mine] = c
    grey = which < 0
    axes.scatter(xy[grey, 0], xy[grey, 1], s=8, c="#c8c8c8", linewidths=0, label="other")
    for c, tag in enumerate(colour_tags[: len(PALETTE)]):
        mine = which == c
        axes.scatter(xy[mine, 0], xy[mine, 1], s=12, c=PALETTE[c], linewidths=0, label=tag)
    axes.scatter(
        xy[cold, 0], xy[cold, 1], s=22, facecolors="none", edgecolors="#222", linewidths=0.6,
        label="cold songs (ringed)",
    )  # fmt: skip
    axes.set_title(
        f"t-SNE of predicted usage patterns ({model_name}), {len(xy):,} songs", fontsize=11
    )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(loc="best", fontsize=8, markerscale=1.5, framealpha=0.85)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def map_data(catalogue, rows, xy, song_tags, colour_tags, *, clip_url) -> dict:
    """What web/map.js draws: per song its id, artist, title, coordinates, clip URL and
    tags (indices into the 50 most frequent tags on the map)."""
    counts: dict[str, int] = {}
    for tags in song_tags:
        for tag in tags:
            counts[tag] = counts.get(tag, 0) + 1
    top = sorted(counts, key=lambda t: (-counts[t], t))[:50]
    top += [tag for tag in colour_tags if tag not in top]
    column = {tag: j for j, tag in enumerate(top)}
    ids = catalogue.song_ids[rows].tolist()
    return {
        "ids": ids,
        "artists": [str(a) for a in catalogue.artists[rows]],
        "titles": [str(t) for t in catalogue.titles[rows]],
        "cold": [bool(c) for c in catalogue.cold[rows]],
        "x": [round(float(v), 3) for v in xy[:, 0]],
        "y": [round(float(v), 3) for v in xy[:, 1]],
        "clips": [clip_url(song) for song in ids],
        "tags": top,
        "song_tags": [sorted(column[t] for t in tags if t in column) for tags in song_tags],
        "colour_tags": [column[tag] for tag in colour_tags],
    }


def web_asset(name: str) -> str:
    """A file of coldtune/web/ (the map's script, the service's page) as text."""
    return resources.files("coldtune").joinpath("web", name).read_text(encoding="utf-8")


def script_json(data) -> str:
    """JSON safe inside a <script> element: no "</" can close it early."""
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def map_page(data: dict, *, title: str) -> str:
    """The self-contained interactive map: the data and web/map.js inlined."""
    import html

    return fill(
        web_asset("map.html"),
        TITLE=html.escape(title),
        DATA=script_json(data),
        MAP_JS=web_asset("map.js"),
    )


def fill(template: str, **values: str) -> str:
    """Put each value at its {{NAME}} in one pass (a value holding "{{...}}" stays)."""
    import re

    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m.group(1)], template)
