"""Log-mel and MFCC features held to librosa on the same signals, and known answers."""

import librosa
import numpy as np
import pytest
import torch

from coldtune.audio.features import (
    CPU_FRAME_BLOCK,
    FeatureConfig,
    _frames,
    delta,
    hz_to_mel,
    log_mel,
    mel_and_mfcc,
    mel_filterbank,
    mel_to_hz,
    mfcc,
)
from coldtune.errors import ParameterError

SR = 22050
# Tolerances: both sides compute in float32; differences come from FFT and summation
# order. dB values span ~80 dB, so 2e-3 dB is 1 part in 40,000.
DB_ATOL = 2e-3
DELTA_ATOL = 2e-4


def music_like(rng, seconds=4.0, sr=SR):
    """Two tones, a chirp and noise at different levels: energy in many bands."""
    t = np.arange(int(seconds * sr)) / sr
    y = (
        0.4 * np.sin(2 * np.pi * 440 * t)
        + 0.2 * np.sin(2 * np.pi * 2637 * t) * (t > seconds / 2)
        + 0.1 * np.sin(2 * np.pi * (200 + 800 * t) * t)
        + 0.02 * rng.standard_normal(t.size)
    )
    return y.astype(np.float32)


@pytest.mark.parametrize(
    "sr,n_fft,n_mels", [(22050, 1024, 128), (16000, 512, 40), (44100, 2048, 96)]
)
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels):
    ours = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels)
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    assert ours.shape == theirs.shape == (n_mels, 1 + n_fft // 2)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)


def test_mel_scale_round_trip_and_slaney_break():
    hz = np.array([0.0, 500.0, 1000.0, 4000.0, 11025.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, rtol=1e-12, atol=1e-9)
    assert hz_to_mel(1000.0) == pytest.approx(15.0)  # linear part: 1000 / (200 / 3)
    np.testing.assert_allclose(hz_to_mel(hz), librosa.hz_to_mel(hz), rtol=1e-12)


def test_log_mel_equals_librosa(rng):
    y = music_like(rng)
    ours = log_mel(y=y, sr=SR)
    theirs = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=512, n_mels=128)
    )
    assert ours.shape == theirs.shape == (128, 1 + y.size // 512)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=DB_ATOL, rtol=0)
    # with a second of silence in front, the floor at 80 dB below the clip's peak shows
    quiet = np.concatenate([np.zeros(SR, np.float32), y])
    floored = log_mel(y=quiet, sr=SR)
    assert floored.max() - floored.min() == pytest.approx(80.0, abs=1e-3)
    np.testing.assert_allclose(
        floored,
        librosa.power_to_db(
            librosa.feature.melspectrogram(y=quiet, sr=SR, n_fft=1024, hop_length=512)
        ),
        atol=DB_ATOL,
    )


def test_mfcc_and_deltas_equal_librosa(rng):
    y = music_like(rng)
    ours = mfcc(y=y, sr=SR)
    coefficients = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=13, n_fft=1024, hop_length=512)
    assert ours.shape == (39, coefficients.shape[1])
    # MFCCs are hundreds of units: an absolute tolerance of 2e-3 is ~1e-5 relative
    np.testing.assert_allclose(ours[:13], coefficients, atol=DB_ATOL, rtol=0)
    np.testing.assert_allclose(ours[13:26], librosa.feature.delta(coefficients), atol=DELTA_ATOL)
    np.testing.assert_allclose(
        ours[26:], librosa.feature.delta(coefficients, order=2), atol=DELTA_ATOL
    )
    assert mfcc(y=y, sr=SR, deltas=False).shape == (13, coefficients.shape[1])


@pytest.mark.parametrize("order,width", [(1, 3), (2, 3), (1, 5), (2, 5), (3, 5), (1, 9), (2, 9)])
def test_delta_equals_librosa_including_edges(rng, order, width):
    data = rng.standard_normal((4, 25))
    np.testing.assert_allclose(
        delta(data=data, order=order, width=width),
        librosa.feature.delta(data, order=order, width=width),
        atol=1e-6,  # float32 arithmetic
    )


def test_delta_of_a_line_is_its_slope():
    ramp = 3.0 * np.arange(20.0) + 1.0
    np.testing.assert_allclose(delta(data=ramp), np.full(20, 3.0), rtol=1e-6)
    np.testing.assert_allclose(delta(data=ramp, order=2), np.zeros(20), atol=1e-5)


def test_440_hz_tone_peaks_in_the_right_mel_band():
    t = np.arange(3 * SR) / SR
    spectrum = log_mel(y=np.sin(2 * np.pi * 440 * t).astype(np.float32), sr=SR)
    # Known answer: 440 Hz is 6.6 mel on Slaney's scale (linear below 1 kHz: hz / (200/3));
    # 128 bands spread 0..hz_to_mel(11025) = 49.91 mel over 129 steps of 0.3869 mel,
    # so band centres are (i + 1) * 0.3869 and 6.6 mel falls on i = 16.
    assert int(np.argmax(spectrum.mean(axis=1))) == 16


def test_batched_input_equals_one_by_one_and_keeps_the_array_kind(rng):
    batch = np.stack([music_like(rng, seconds=2.0) for _ in range(3)])
    together = log_mel(y=batch, sr=SR)
    assert together.shape == (3, 128, 1 + batch.shape[1] // 512)
    for i in range(3):
        np.testing.assert_allclose(together[i], log_mel(y=batch[i], sr=SR), atol=1e-4)
    as_tensor = mfcc(y=torch.from_numpy(batch), sr=SR)
    assert isinstance(as_tensor, torch.Tensor)
    np.testing.assert_allclose(as_tensor.numpy(), mfcc(y=batch, sr=SR), atol=1e-4)


def test_mel_and_mfcc_are_the_two_features_frames_major(rng):
    y = music_like(rng, seconds=2.0)
    mel, coefficients = mel_and_mfcc(y=y, config=FeatureConfig())
    np.testing.assert_allclose(mel, log_mel(y=y, sr=SR).T, atol=1e-4)
    np.testing.assert_allclose(coefficients, mfcc(y=y, sr=SR).T, atol=1e-3)


def test_a_clip_of_many_blocks_equals_librosa(rng):
    """15 s: 646 frames, so the CPU path's blocks of CPU_FRAME_BLOCK frames, the last one
    short, and the filterbank over the whole clip are all held to librosa."""
    y = music_like(rng, seconds=15.0)
    assert FeatureConfig().frames(y.size) > 2 * CPU_FRAME_BLOCK
    mel, coefficients = mel_and_mfcc(y=y, config=FeatureConfig())
    S = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=512, n_mels=128)
    )
    M = librosa.feature.mfcc(S=S, n_mfcc=13)
    assert mel.shape == (S.shape[1], 128) and coefficients.shape == (S.shape[1], 39)
    np.testing.assert_allclose(mel.T, S, atol=DB_ATOL, rtol=0)
    np.testing.assert_allclose(coefficients[:, :13].T, M, atol=DB_ATOL, rtol=0)
    np.testing.assert_allclose(coefficients[:, 13:26].T, librosa.feature.delta(M), atol=DELTA_ATOL)
    np.testing.assert_allclose(
        coefficients[:, 26:].T, librosa.feature.delta(M, order=2), atol=DELTA_ATOL
    )


def test_log1p_compression_option(rng):
    y = music_like(rng, seconds=2.0)
    power = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=512)
    ours = log_mel(y=y, sr=SR, compression="log1p")
    np.testing.assert_allclose(ours, np.log1p(10_000 * power), rtol=1e-4, atol=1e-4)
    mel, _ = mel_and_mfcc(y=y, config=FeatureConfig(compression="log1p"))
    np.testing.assert_allclose(mel.T, ours, atol=1e-4)


@pytest.mark.parametrize("n_fft,hop", [(1024, 512), (512, 128), (255, 100), (256, 300)])
@pytest.mark.parametrize("n", [200, 511, 512, 513, 1023, 1024, 1025, 1500, 5000])
def test_frames_equal_those_of_the_whole_signal_zero_padded(rng, n, n_fft, hop):
    y = torch.from_numpy(rng.standard_normal((2, n)).astype(np.float32))
    padded = torch.nn.functional.pad(y, (n_fft // 2, n_fft // 2))  # the slow reference
    if padded.shape[-1] < n_fft:
        return
    pieces = _frames(y, n_fft, hop)
    assert len(pieces) <= 3
    torch.testing.assert_close(torch.cat(pieces, dim=-2), padded.unfold(-1, n_fft, hop))


def test_frame_count_of_centred_frames():
    for n in (512, 1000, 1024, 66150):
        assert log_mel(y=np.ones(n, np.float32), sr=SR).shape[1] == 1 + n // 512
    assert FeatureConfig().frames(30 * SR) == 1292


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: log_mel(y=np.zeros(0, np.float32), sr=SR), "signal"),
        (lambda: log_mel(y=np.zeros(4096, np.float32), sr=SR, n_mels=0), "n_mels"),
        (lambda: log_mel(y=np.zeros(4096, np.float32), sr=SR, compression="cube"), "compression"),
        (lambda: mfcc(y=np.zeros(4096, np.float32), sr=SR, n_mfcc=200), "n_mfcc"),
        (lambda: delta(data=np.zeros(5)), "at least width=9"),
        (lambda: delta(data=np.zeros(20), width=4), "odd"),
    ],
)
def test_bad_parameters_are_named(call, message):
    with pytest.raises(ParameterError, match=message):
        call()
