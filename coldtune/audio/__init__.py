"""Audio in: decode clips, log-mel and MFCC features (section 4), the feature store.

The names below are imported when first used, so reading a clip's settings (the
CLI's options) loads no torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ClipConfig": "coldtune.audio.decode",
    "ClipRejected": "coldtune.audio.decode",
    "decode_clip": "coldtune.audio.decode",
    "FeatureConfig": "coldtune.audio.configs",
    "log_mel": "coldtune.audio.features",
    "mel_and_mfcc": "coldtune.audio.features",
    "mfcc": "coldtune.audio.features",
    "ExtractConfig": "coldtune.audio.store",
    "FeatureStore": "coldtune.audio.store",
    "extract": "coldtune.audio.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'coldtune.audio' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
