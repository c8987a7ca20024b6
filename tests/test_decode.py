"""Decoding clips: every format, rate and channel count to 22,050 Hz mono; bad files
rejected with their reason."""

import librosa
import numpy as np
import pytest
import soundfile as sf
from conftest import AUDIO_FORMATS, tone, write_clip

from coldtune.audio.decode import ClipConfig, ClipRejected, decode_clip, to_mono
from coldtune.audio.features import FeatureConfig, mel_and_mfcc
from coldtune.errors import ParameterError

# the features' tolerances against librosa (tests/test_features.py)
DB_ATOL = 2e-3
DELTA_ATOL = 2e-4


@pytest.mark.parametrize(
    "suffix,sr,channels",
    [
        ("wav", 44100, 2),
        ("flac", 48000, 1),
        ("ogg", 32000, 2),
        ("mp3", 44100, 2),
        ("opus", 48000, 1),
    ],
)
def test_every_format_decodes_to_mono_22050(tmp_path, suffix, sr, channels):
    path = write_clip(tmp_path / f"clip.{suffix}", tone(5.0, sr, 440, channels), sr)
    # the file really is of that format, rate and channels, not a WAV with its suffix
    info = sf.info(path)
    assert ((info.format, info.subtype), info.samplerate, info.channels) == (
        AUDIO_FORMATS[suffix],
        sr,
        channels,
    )
    clip = decode_clip(path, ClipConfig(seconds=30.0))
    assert clip.dtype == np.float32 and clip.ndim == 1
    # the whole 5 s file: lossy codecs may add or trim a few ms of padding
    assert abs(clip.size / 22050 - 5.0) < 0.06
    # still a 440 Hz tone (mono mix of 440 and 880 when stereo): the spectrum peaks there
    spectrum = np.abs(np.fft.rfft(clip[22050:44100]))
    assert abs(np.argmax(spectrum) - 440) <= 2


def test_wav_equals_librosa_load(tmp_path):
    path = write_clip(tmp_path / "a.wav", tone(6.0, 44100, 440, 2), 44100)
    ours = decode_clip(path, ClipConfig(position="whole"))
    theirs, _ = librosa.load(path, sr=22050, mono=True)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_to_mono_is_the_mean_of_the_channels_to_the_last_bit(rng, channels):
    audio = rng.standard_normal((10_001, channels)).astype(np.float32)
    mono = to_mono(audio)
    assert mono.shape == (10_001,) and mono.dtype == np.float32
    np.testing.assert_array_equal(mono, audio.mean(axis=1))
    np.testing.assert_array_equal(mono, librosa.to_mono(audio.T))


def two_voices(seconds: float, sr: int) -> np.ndarray:
    """Stereo whose channels differ (a tone and a chord), float32 [shape=(n, 2)]."""
    t = np.arange(int(seconds * sr)) / sr
    left = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    right = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (262, 330, 392, 2093))
    return np.stack([left, right], axis=1).astype(np.float32)


@pytest.mark.parametrize("suffix", ["mp3", "ogg", "flac"])
def test_clip_and_features_equal_librosa_load_and_librosa_features(tmp_path, suffix):
    """The fast path end to end (seek to the middle, mono, soxr HQ, both features) held
    to what librosa gives for the same seconds of the same file."""
    path = write_clip(tmp_path / f"two.{suffix}", two_voices(12.0, 44100), 44100)
    declared = sf.info(path).frames
    config = ClipConfig(seconds=8.0)
    ours = decode_clip(path, config)
    first = (declared - 8 * 44100) // 2
    theirs, _ = librosa.load(path, sr=22050, mono=True, offset=first / 44100, duration=8.0)
    assert ours.shape == theirs.shape == (8 * 22050,)
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)

    mel, coefficients = mel_and_mfcc(y=ours, config=FeatureConfig())
    S = librosa.power_to_db(
        librosa.feature.melspectrogram(y=theirs, sr=22050, n_fft=1024, hop_length=512)
    )
    M = librosa.feature.mfcc(S=S, n_mfcc=13)
    np.testing.assert_allclose(mel.T, S, atol=DB_ATOL, rtol=0)
    np.testing.assert_allclose(coefficients[:, :13].T, M, atol=DB_ATOL, rtol=0)
    np.testing.assert_allclose(coefficients[:, 13:26].T, librosa.feature.delta(M), atol=DELTA_ATOL)
    np.testing.assert_allclose(
        coefficients[:, 26:].T, librosa.feature.delta(M, order=2), atol=DELTA_ATOL
    )


def test_clip_positions_pick_the_right_seconds(tmp_path):
    # 10 s: 3 s at 300 Hz, 4 s at 1000 Hz, 3 s at 3000 Hz
    sr = 22050
    parts = [tone(3.0, sr, 300), tone(4.0, sr, 1000), tone(3.0, sr, 3000)]
    path = write_clip(tmp_path / "three.flac", np.concatenate(parts), sr)

    def peak_hz(clip):
        return np.argmax(np.abs(np.fft.rfft(clip))) * sr / clip.size

    start = decode_clip(path, ClipConfig(seconds=3.0, position="start"))
    middle = decode_clip(path, ClipConfig(seconds=3.0, position="middle"))
    whole = decode_clip(path, ClipConfig(position="whole"))
    assert start.size == middle.size == 3 * sr and whole.size == 10 * sr
    assert peak_hz(start) == pytest.approx(300, abs=2)
    assert peak_hz(middle) == pytest.approx(1000, abs=2)
    np.testing.assert_array_equal(middle, whole[int(3.5 * sr) : int(6.5 * sr)])
    # a file shorter than the clip gives all of itself
    assert decode_clip(path, ClipConfig(seconds=30.0)).size == 10 * sr


def _write(path, data):
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def _truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda d: d / "missing.wav", "cannot open"),
        (lambda d: _write(d / "empty.mp3", b""), "empty file"),
        (lambda d: _write(d / "text.mp3", "not audio\n" * 50), "not a"),
        (lambda d: _write(d / "notes.txt", "hello"), "not a readable"),
        (lambda d: _truncate(write_clip(d / "t.wav", tone(8, 44100), 44100)), "truncated"),
        (lambda d: _truncate(write_clip(d / "t.flac", tone(8, 44100), 44100)), "truncated"),
        (lambda d: _truncate(write_clip(d / "t.mp3", tone(8, 44100), 44100)), "truncated"),
        (lambda d: _truncate(write_clip(d / "t.ogg", tone(8, 44100), 44100)), "truncated"),
        (lambda d: write_clip(d / "s.wav", tone(5, 22050, level=0.0), 22050), "silent"),
        (lambda d: write_clip(d / "short.ogg", tone(2.0, 44100), 44100), "too short: 2.0"),
    ],
    ids=[
        "missing",
        "empty",
        "text-as-mp3",
        "text",
        "cut-wav",
        "cut-flac",
        "cut-mp3",
        "cut-ogg",
        "silent",
        "short",
    ],
)
def test_bad_files_are_rejected_with_their_reason(tmp_path, make, reason):
    with pytest.raises(ClipRejected, match=reason):
        decode_clip(make(tmp_path))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected(tmp_path, bad):
    audio = tone(4.0, 22050)
    audio[100] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, audio, 22050, subtype="FLOAT")
    with pytest.raises(ClipRejected, match="non-finite"):
        decode_clip(path)


def test_a_negative_peak_counts_and_a_quiet_clip_is_silent(tmp_path):
    audio = tone(4.0, 22050, level=5e-5)  # below the silence threshold everywhere
    audio[100] = -0.5  # but one: the loudest sample is negative, the peak is |min|
    path = write_clip(tmp_path / "quiet.wav", audio, 22050)
    assert decode_clip(path).size == 4 * 22050
    silent = write_clip(tmp_path / "silent.wav", tone(4.0, 22050, level=5e-5), 22050)
    with pytest.raises(ClipRejected, match="silent \\(peak -8[0-9] dBFS\\)"):
        decode_clip(silent)


def test_min_seconds_is_a_parameter(tmp_path):
    path = write_clip(tmp_path / "two.wav", tone(2.0, 22050), 22050)
    assert decode_clip(path, ClipConfig(min_seconds=1.0)).size == 2 * 22050


@pytest.mark.parametrize(
    "config,name",
    [
        (ClipConfig(position="end"), "position"),
        (ClipConfig(seconds=0), "seconds"),
        (ClipConfig(sr=0), "sr"),
    ],
)
def test_bad_clip_config_is_named(config, name):
    with pytest.raises(ParameterError, match=name):
        config.validate()
