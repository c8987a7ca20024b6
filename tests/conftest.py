import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/reference.py


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


# soundfile's (format, subtype) for each kind of file the audio tests write
AUDIO_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def tone(seconds: float, sr: int, freq: float = 440.0, channels: int = 1, level: float = 0.3):
    """A sine, further channels an octave higher each at half the level, float32
    [shape=(n, channels)]: the mono mix still peaks at `freq`."""
    t = np.arange(int(round(seconds * sr))) / sr
    waves = [level / (c + 1) * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]
    return np.stack(waves, axis=1).astype(np.float32)


def write_clip(path: Path, audio: np.ndarray, sr: int) -> Path:
    """Write `audio` [shape=(n, channels)] as the format its suffix names."""
    import soundfile as sf

    file_format, subtype = AUDIO_FORMATS[path.suffix.lstrip(".")]
    sf.write(path, audio, sr, format=file_format, subtype=subtype)
    return path
