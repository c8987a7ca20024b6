"""Content models (section 4): songs' features -> WMF song factors, registered by name.

Every model is an estimator (see `coldtune.content.base`): fit on the warm songs,
predict factors for any song's features, save and load without pickle. The registry
below names them, in Table 2's order (metadata, section 1.1's reference, last); it also
gives each results row its name and the paper's label, so a table follows it.

    >>> from coldtune import content
    >>> model = content.make("bow-linear", words=500).fit(training_set)
    >>> model.save(folder); content.load(folder).predict([{"mfcc": frames}])

This module imports neither torch nor faiss: an estimator's module is imported when the
model is made or loaded.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from coldtune.content.configs import (
    BowLinearConfig,
    BowMLPConfig,
    CNNConfig,
    MetadataConfig,
    MLRConfig,
)
from coldtune.errors import ParameterError, WorkspaceError


@dataclass(frozen=True)
class ModelSpec:
    """One registered content model."""

    name: str
    config: type  # its frozen config dataclass
    estimator: str  # "module:Class", imported when needed
    reads: str  # the features it predicts from: mfcc, mel or tags
    label: str  # the paper's name of its row; {objective} is filled from the config
    row_format: str = "{name}"  # the row's name; fields of the config fill it
    # (field, suffix, words): a config whose field differs from its default gets
    # "-suffix" after the row's name and ", words" after its label (cnn-small-mse-unit)
    variants: tuple[tuple[str, str, str], ...] = ()

    def row(self, config) -> str:
        """The results row (and W/models/ folder) of this model with `config`:
        bow-mlp and cnn are named by their settings (bow-mlp-wpe, cnn-paper-mse), and
        a variant by what differs (bow-linear-unit: unit-norm targets)."""
        values = config.to_dict()
        row = self.row_format.format(name=self.name, **values)
        return "-".join([row, *(suffix for suffix, _ in self._varied(values))])

    def row_label(self, config) -> str:
        label = self.label.format(objective=getattr(config, "objective", "").upper())
        return ", ".join([label, *(words for _, words in self._varied(config.to_dict()))])

    def _varied(self, values: dict) -> list[tuple[str, str]]:
        defaults = {f.name: f.default for f in fields(self.config)}
        return [
            (suffix.format(**values), words.format(**values))
            for name, suffix, words in self.variants
            if values[name] != defaults[name]
        ]

    def estimator_class(self) -> type:
        module, _, cls = self.estimator.partition(":")
        return getattr(importlib.import_module(module), cls)

    def options(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.config))


CONTENT_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "bow-linear",
            BowLinearConfig,
            "coldtune.content.bow:BowLinear",
            "mfcc",
            "linear regression",
            variants=(("target", "{target}", "{target}-norm targets"),),
        ),
        ModelSpec(
            "bow-mlp",
            BowMLPConfig,
            "coldtune.content.mlp:BowMLP",
            "mfcc",
            "multilayer perceptron ({objective})",
            "bow-mlp-{objective}",
        ),
        ModelSpec("mlr", MLRConfig, "coldtune.content.mlr:MLR", "mfcc", "metric learning to rank"),
        ModelSpec(
            "cnn",
            CNNConfig,
            "coldtune.content.cnn:CNN",
            "mel",
            "convolutional net ({objective})",
            "cnn-{architecture}-{objective}",
            variants=(
                ("target", "{target}", "{target}-norm targets"),
                ("tag_weight", "tags", "taught by tags"),
                ("average", "avg", "weights averaged"),
            ),
        ),
        ModelSpec(
            "metadata",
            MetadataConfig,
            "coldtune.content.metadata:Metadata",
            "tags",
            "metadata (tags)",
        ),
    )
}


def spec(name: str) -> ModelSpec:
    if name not in CONTENT_MODELS:
        raise ParameterError(f"model must be one of {', '.join(CONTENT_MODELS)}, got {name!r}")
    return CONTENT_MODELS[name]


def make_config(name: str, **options: Any):
    """Model `name`'s config with `options` changed; an option it does not take is an
    error naming the ones it does."""
    model = spec(name)
    accepted = model.options()
    wrong = [option for option in options if option not in accepted]
    if wrong:
        flags = ", ".join("--" + option.replace("_", "-") for option in wrong)
        takes = ", ".join("--" + option.replace("_", "-") for option in accepted)
        raise ParameterError(f"{flags} does not apply to {name}; it takes {takes}")
    return model.config(**options).validate()


def make(name: str, **options: Any):
    """An unfitted estimator of model `name`."""
    return spec(name).estimator_class()(make_config(name, **options))


def load(folder: str | Path):
    """The fitted model saved in `folder` (config.json names which one it is)."""
    path = Path(folder) / "config.json"
    if not path.exists():
        raise WorkspaceError(f"{path}: no saved content model here; train one first")
    saved = json.loads(path.read_text())
    if not isinstance(saved, dict) or saved.get("model") not in CONTENT_MODELS:
        raise WorkspaceError(
            f"{path}: not a content model's config (an older coldtune's?); train it again"
        )
    return spec(saved["model"]).estimator_class().load(Path(folder))


def saved_model_name(folder: str | Path) -> str | None:
    """The registered name of the model saved in `folder`, None if there is none."""
    path = Path(folder) / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    name = saved.get("model") if isinstance(saved, dict) else None
    return (
        name if name in CONTENT_MODELS and (Path(folder) / "weights.safetensors").exists() else None
    )


def table_order(row: str) -> tuple[int, str]:
    """Sort key of a results row named after its model folder (`cnn-paper-mse` is a
    `cnn`): the registry's order, then the name; unknown names last."""
    ranks = [
        i for i, name in enumerate(CONTENT_MODELS) if row == name or row.startswith(name + "-")
    ]
    return (max(ranks, default=len(CONTENT_MODELS)), row)


__all__ = ["CONTENT_MODELS", "ModelSpec", "load", "make", "make_config", "spec", "table_order"]
