"""`metadata`, the reference of section 1.1: a song's Last.fm tags -> ridge -> factors.

Tags (weight / 100) of the `vocabulary` tags most used on warm songs (and used by at
least two) are regressed onto the WMF factors. A song without tags gets the warm songs'
mean factors (the ridge's bias). It reads no audio, so it cannot embed a clip alone:
give `predict` the clip's tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coldtune.content.base import SongFeatures, TrainingSet, read_model_files, save_model
from coldtune.content.bow import PCARidge
from coldtune.content.configs import MetadataConfig
from coldtune.errors import WorkspaceError


class Metadata:
    name = "metadata"
    reads = "tags"

    def __init__(self, config: MetadataConfig = MetadataConfig()):
        self.config = config

    def fit(self, data: TrainingSet) -> Metadata:
        config = self.config.validate()
        counts: dict[str, int] = {}
        for song in data.songs():
            for tag in song["tags"]:
                counts[tag] = counts.get(tag, 0) + 1
        chosen = sorted((t for t in counts if counts[t] >= 2), key=lambda t: (-counts[t], t))
        self.vocabulary_ = chosen[: config.vocabulary]
        if not self.vocabulary_:
            raise WorkspaceError("no tag is used by two warm songs: nothing to learn from")
        self.regression_ = PCARidge(config.ridge()).fit(self._matrix(data.songs()), data.factors)
        self.fit_report_ = {"tags": len(self.vocabulary_), "alpha": self.regression_.alpha_}
        return self

    def _matrix(self, songs: Sequence[SongFeatures]) -> np.ndarray:
        column = {tag: j for j, tag in enumerate(self.vocabulary_)}
        out = np.zeros((len(songs), len(column)), dtype=np.float64)
        for i, song in enumerate(songs):
            for tag, weight in song["tags"].items():
                if tag in column:
                    out[i, column[tag]] = weight / 100.0
        return out

    def predict(self, songs: Sequence[SongFeatures]) -> np.ndarray:
        """Factors [shape=(len(songs), factors)] float32 of songs' {tag: weight}."""
        return self.regression_.predict(self._matrix(songs))

    def tagged(self, songs: Sequence[SongFeatures]) -> int:
        """How many of `songs` carry a tag of the vocabulary."""
        return int((self._matrix(songs).sum(axis=1) > 0).sum())

    def save(self, folder: Path) -> None:
        state = {"vocabulary": self.vocabulary_, "alpha": self.regression_.alpha_}
        save_model(folder, self.name, self.config, self.regression_.arrays(), state)

    @classmethod
    def load(cls, folder: Path) -> Metadata:
        config, arrays, state = read_model_files(folder, MetadataConfig)
        model = cls(config)
        model.vocabulary_ = state["vocabulary"]
        model.regression_ = PCARidge.from_arrays(arrays, config.ridge())
        model.regression_.alpha_ = state.get("alpha")
        return model
