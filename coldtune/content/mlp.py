"""`bow-mlp`, section 4.1's multilayer perceptron: BoW -> PCA (95%), whitened -> 1,000
ReLU units -> the factors, trained with eq. (4) or eq. (5) in the shared loop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from coldtune.content.base import (
    SongFeatures,
    TrainingSet,
    read_model_files,
    save_model,
)
from coldtune.content.bow import WhitenedBag
from coldtune.content.configs import BowMLPConfig
from coldtune.content.objectives import WPELoss, mse_loss
from coldtune.content.training import fit_report, network_state, train_config, train_loop


def build_mlp(n_in: int, config: BowMLPConfig, factors: int) -> torch.nn.Sequential:
    dropout = config.resolved_dropout
    return torch.nn.Sequential(
        torch.nn.Dropout(0.4 * dropout),
        torch.nn.Linear(n_in, config.hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(config.hidden, factors),
    )


class BowMLP:
    """`bow-mlp`: predict(songs' MFCC frames) -> factors."""

    name = "bow-mlp"
    reads = "mfcc"

    def __init__(self, config: BowMLPConfig = BowMLPConfig()):
        self.config = config

    def fit(self, data: TrainingSet) -> BowMLP:
        config = self.config.validate()
        loop = train_config(config)
        self.inputs_, features = WhitenedBag.learn(data, config)
        features = torch.as_tensor(features)
        targets = torch.as_tensor(data.factors.astype(np.float32))
        torch.manual_seed(config.seed)
        self.network_ = build_mlp(features.shape[1], config, targets.shape[1])
        if config.objective == "wpe":
            wpe = WPELoss(data.user_factors, data.confidence)

            def loss(predicted, rows):
                return wpe(predicted.cpu(), rows)
        else:

            def loss(predicted, rows):
                return mse_loss(predicted.cpu(), targets[rows])

        result = train_loop(
            self.network_,
            n_items=len(features),
            make_batch=lambda rows, _rng: features[rows],
            objective=loss,
            config=loop,
            checkpoint=data.checkpoint,
            identity={"model": config.to_dict(), "data": data.fingerprint()},
            device="cpu",
        )
        self.network_.eval()
        self.factors_ = targets.shape[1]
        self.fit_report_ = {
            "pca_components": int(features.shape[1]),
            "objective": config.objective,
            **fit_report(result),
        }
        return self

    def predict(self, songs: Sequence[SongFeatures]) -> np.ndarray:
        with torch.no_grad():
            return self.network_(torch.as_tensor(self.inputs_.transform(songs))).numpy()

    def save(self, folder: Path) -> None:
        arrays = self.inputs_.arrays()
        arrays |= {f"network.{k}": v.numpy() for k, v in self.network_.state_dict().items()}
        save_model(folder, self.name, self.config, arrays)

    @classmethod
    def load(cls, folder: Path) -> BowMLP:
        config, arrays, _ = read_model_files(folder, BowMLPConfig)
        model = cls(config)
        model.inputs_ = WhitenedBag.from_arrays(arrays, config)
        weights = network_state(arrays)
        n_in = weights["1.weight"].shape[1]
        model.factors_ = weights["4.weight"].shape[0]
        model.network_ = build_mlp(n_in, config, model.factors_)
        model.network_.load_state_dict(weights)
        model.network_.eval()
        return model
