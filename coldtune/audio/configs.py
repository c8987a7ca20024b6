"""How clips become features: the settings saved beside a feature store. No torch, so
the CLI's options are read from it without loading the feature code."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from coldtune.errors import ParameterError

COMPRESSION_NAMES = ("db", "log1p")  # the log-mel compressions of features.COMPRESSIONS


@dataclass(frozen=True)
class FeatureConfig:
    """How clips become features; saved beside a feature store (config.json)."""

    sr: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    n_mfcc: int = 13
    compression: str = field(
        default="db", metadata={"help": "Log-mel compression: db (librosa) or log1p."}
    )  # a name in COMPRESSION_NAMES
    top_db: float = 80.0  # "db": floor at this many dB below the clip's maximum
    log1p_scale: float = 10_000.0  # "log1p": log(1 + scale * S)

    def validate(self) -> FeatureConfig:
        for name in ("sr", "n_fft", "hop_length", "n_mels", "n_mfcc"):
            value = getattr(self, name)
            if not (isinstance(value, int | np.integer) and value >= 1):
                raise ParameterError(f"{name} must be a positive integer, got {value!r}")
        if self.n_mfcc > self.n_mels:
            raise ParameterError(f"n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels})")
        if self.compression not in COMPRESSION_NAMES:
            raise ParameterError(
                f"compression must be one of {', '.join(COMPRESSION_NAMES)}, "
                f"got {self.compression!r}"
            )
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def frames(self, n_samples: int) -> int:
        """Number of centred frames for a signal of `n_samples` samples."""
        return 1 + n_samples // self.hop_length

    @property
    def frames_per_second(self) -> float:
        return self.sr / self.hop_length
