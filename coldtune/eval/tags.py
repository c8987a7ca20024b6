"""Tag prediction (section 5.1): how much do factors, or audio, say about a song's tags?

    "We ran WMF to obtain 50-dimensional latent factor vectors for all 9,330 songs in the
    subset, and trained a logistic regression model to predict the 50 most popular tags
    [...]. We also trained a logistic regression model on a bag-of-words representation
    of the audio signals, which was first reduced in size using PCA [...]. We used 10-fold
    cross-validation and computed the average area under the ROC curve (AUC) across all
    tags. This resulted in an average AUC of 0.69365 for audio-based prediction, and
    0.86703 for prediction based on the latent factor vectors." (section 5.1)

One logistic regression per tag (standardised inputs), k-fold cross-validation
stratified by the tag, the AUC averaged over the folds, then over the tags. The inputs,
each a row of the table (`TAG_FEATURES`):

- `wmf`: WMF's song factors. Only warm songs have them: cold songs were never played
  as far as WMF knows.
- `bow-pca`: the MFCC bag of words of section 4.1 (codebook learned on warm songs),
  reduced by PCA (fitted on warm songs) to 95% of the variance.
- `predicted`: the clip model's predicted factors (a CNN, section 4.2). On warm songs
  they are in-sample (the CNN was trained to reproduce those songs' factors); on cold
  songs they are out-of-sample, from audio the CNN never saw.

The songs, each a column: `warm` (the warm songs with audio: the paper's setting, every
row), and `cold` (the cold songs: no `wmf`; the fair test of the predictions). Tags are
the most frequent ones among the warm songs; a tag is left out of a column where fewer
than `min_songs` songs have it, or fewer than `min_songs` do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from coldtune.errors import ParameterError

PAPER_AUC = {"wmf": 0.86703, "bow-pca": 0.69365}
"""Section 5.1's means over 50 Last.fm tags on the MSD subset (warm songs)."""

SONG_SETS = ("warm", "cold")


@dataclass(frozen=True)
class TagConfig:
    """The tag experiment's settings; saved in W/results/tags.json."""

    tags: int = field(default=50, metadata={"help": "The most frequent tags to predict."})
    folds: int = field(default=10, metadata={"help": "Cross-validation folds."})
    min_songs: int = field(
        default=10, metadata={"help": "Songs with and without a tag it needs (>= folds)."}
    )
    regularization: float = field(
        default=1.0, metadata={"help": "Logistic regression's C (inverse strength)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the folds."})

    def validate(self) -> TagConfig:
        if self.tags < 1:
            raise ParameterError(f"tags must be >= 1, got {self.tags!r}")
        if self.folds < 2:
            raise ParameterError(f"folds must be >= 2, got {self.folds!r}")
        if self.min_songs < self.folds:
            raise ParameterError(
                f"min_songs ({self.min_songs}) must be >= folds ({self.folds}): every fold "
                "needs a song with the tag"
            )
        if not self.regularization > 0:
            raise ParameterError(f"regularization must be > 0, got {self.regularization!r}")
        return self


def cross_validated_auc(features: np.ndarray, labels: np.ndarray, config: TagConfig) -> float:
    """Mean AUC over `config.folds` stratified folds of a logistic regression on
    standardised `features` [shape=(n_songs, dims)] predicting `labels` (bool, n_songs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=config.regularization, max_iter=2000)
    )
    folds = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    return float(cross_val_score(model, features, labels, cv=folds, scoring="roc_auc").mean())


def most_frequent_tags(song_tags: dict[str, set[str]], song_ids, n: int) -> list[str]:
    """The n tags most songs of `song_ids` have; ties broken by name."""
    counts: dict[str, int] = {}
    for song in song_ids:
        for tag in song_tags.get(song, ()):
            counts[tag] = counts.get(tag, 0) + 1
    return sorted(counts, key=lambda tag: (-counts[tag], tag))[:n]


def tag_labels(song_tags: dict[str, set[str]], song_ids, tags: list[str]) -> np.ndarray:
    """[shape=(n_songs, n_tags)] bool: song i has tag j."""
    return np.array(
        [[tag in song_tags.get(song, ()) for tag in tags] for song in song_ids], dtype=bool
    ).reshape(len(song_ids), len(tags))


def tag_table(features, labels, usable, tags, config, on_progress, *, workers: int = 1):
    """Mean AUC per (features, songs), and each tag's AUC. With `workers` > 1 the tags'
    cross-validations run in that many processes (joblib's, one BLAS thread each: each
    fit is a few thousand songs, too small to split), in the same order and with the
    same folds, so the figures are those of one process."""
    from joblib import Parallel, delayed

    jobs = [
        (row_name, set_name, j)
        for row_name, by_set in features.items()
        for set_name in SONG_SETS
        if set_name in by_set
        for j in usable[set_name]
    ]
    calls = (
        delayed(cross_validated_auc)(features[r][s], labels[s][:, j], config) for r, s, j in jobs
    )
    aucs: dict[tuple[str, str], dict[str, float]] = {}
    with Parallel(n_jobs=max(1, workers), return_as="generator") as parallel:
        for (row_name, set_name, j), auc in zip(jobs, parallel(calls), strict=True):
            done = aucs.setdefault((row_name, set_name), {})
            done[tags[j]] = auc
            if on_progress is not None:
                on_progress(row_name, set_name, len(done), len(usable[set_name]))
    rows, per_tag = [], {}
    for row_name in features:
        row = {"features": row_name}
        for set_name in SONG_SETS:
            found = aucs.get((row_name, set_name))
            row[set_name] = float(np.mean(list(found.values()))) if found else None
            if found:
                per_tag[f"{row_name}/{set_name}"] = found
        rows.append(row)
    return rows, per_tag


ROW_LABELS = {
    "wmf": "WMF factors",
    "bow-pca": "BoW-PCA audio features",
    "predicted": "predicted factors ({model})",
}


def tags_markdown(results: dict) -> str:
    """The table of `tag_experiment`'s JSON, with what each column means."""
    songs, used = results["songs"], results["tags_used"]
    lines = [
        f"## {results['title']}",
        "",
        f"Mean AUC over tags, logistic regression, {results['config']['folds']}-fold "
        f"cross-validation. Tags: the {len(results['tags'])} most frequent among warm songs; "
        f"{used['warm']} have enough songs among the {songs['warm']:,} warm songs, "
        f"{used['cold']} among the {songs['cold']:,} cold songs.",
        "",
        "| Features | dims | warm songs | cold songs | paper (warm) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in results["rows"]:
        name = row["features"]
        cells = [f"{row[s]:.3f}" if row[s] is not None else "-" for s in SONG_SETS]
        paper = f"{PAPER_AUC[name]:.3f}" if name in PAPER_AUC else "-"
        label = ROW_LABELS[name].format(model=results["model"])
        lines.append(f"| {label} | {results['dims'][name]} | {cells[0]} | {cells[1]} | {paper} |")
    lines += [
        "",
        "Warm songs: WMF learned their factors from their plays, and the clip model was "
        "trained on them, so its predictions there are in-sample. Cold songs: nobody's "
        "plays reached WMF or the clip model; no WMF factors exist for them.",
    ]
    return "\n".join(lines) + "\n"
