"""Audio in: decode clips, log-mel and MFCC features (section 4), the feature store."""

from coldtune.audio.decode import ClipConfig, ClipRejected, decode_clip
from coldtune.audio.features import FeatureConfig, log_mel, mel_and_mfcc, mfcc
from coldtune.audio.store import ExtractConfig, FeatureStore, extract

__all__ = [
    "ClipConfig",
    "ClipRejected",
    "ExtractConfig",
    "FeatureConfig",
    "FeatureStore",
    "decode_clip",
    "extract",
    "log_mel",
    "mel_and_mfcc",
    "mfcc",
]
