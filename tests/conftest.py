import os
import shutil
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


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """The small world, built once per test session (about 40 s on 2 cores), with a
    parse cache of its own, cold as in CI, which every test of the session shares."""
    from coldtune.world.build import build_world, world_config

    root = tmp_path_factory.mktemp("world")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLDTUNE_CACHE", str(root / "cache"))
        summary = build_world(root / "small", world_config("small", seed=0))
        yield root / "small", summary


@pytest.fixture(scope="session")
def small_workspace(small_world, tmp_path_factory):
    """A workspace on the small world with what the analyses and the service read:
    plays, split, WMF, features, tags, a CNN trained briefly, the results table.
    Shared by the session's tests: they may add results to it, never change inputs."""
    from coldtune import pipeline
    from coldtune.audio.store import extract
    from coldtune.cf.wmf import WMFConfig
    from coldtune.data.splits import SplitConfig
    from coldtune.data.tags import ingest_tags
    from coldtune.models import train
    from coldtune.workspace import Workspace

    world, _ = small_world
    root = tmp_path_factory.mktemp("workspace")
    shutil.copytree(world, root / "world", copy_function=os.link)
    workspace = Workspace(root)
    pipeline.ingest(root / "world" / "train_triplets.txt", workspace)
    pipeline.make_split(workspace, SplitConfig(cold_fraction=0.2, seed=0))
    pipeline.fit_wmf(workspace, WMFConfig(factors=16, iterations=8))
    extract(None, workspace.features_dir, manifest=root / "world" / "clips.csv", workers=2)
    ingest_tags(root / "world" / "lastfm", root / "world" / "unique_tracks.txt", workspace)
    train(workspace, "cnn", max_epochs=3, patience=3)
    pipeline.evaluate(workspace)
    return workspace
