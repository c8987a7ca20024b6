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


SMALL_SONGS, SMALL_USERS = 150, 2000


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
def small_demo(small_world, tmp_path_factory):
    """`coldtune demo --world small --all-rows` run once per session: (Workspace, results). Tests
    read it; a test that writes into it must copy it first."""
    import os
    import shutil

    from coldtune.steps.demo import DemoConfig, run_demo
    from coldtune.workspace import Workspace

    world, _ = small_world
    root = tmp_path_factory.mktemp("demo") / "W"
    shutil.copytree(world, root / "world", copy_function=os.link)
    results = run_demo(Workspace(root), DemoConfig(world="small", rows=()))  # every row
    return Workspace(root), results


@pytest.fixture(scope="session")
def small_workspace(small_demo, tmp_path_factory):
    """A copy of the small demo's workspace (files hard-linked: every coldtune step
    replaces files, never writes into them), for tests that add results to it: tags,
    the map, the report, the clip model's catalogue predictions."""
    import os
    import shutil

    from coldtune.workspace import Workspace

    demo, _ = small_demo
    root = tmp_path_factory.mktemp("workspace") / "W"
    shutil.copytree(demo.root, root, copy_function=os.link)
    return Workspace(root)
