"""Audio features of 30 s clips on one core: coldtune (torch) vs librosa, and the FFT alone.

    cd benchmarks; python bench_features.py --clips 8 --repeats 31 --before REV

"librosa" is the pair computed the efficient way a careful user would write it (one
STFT; MFCCs from the same log-mel):
    S = power_to_db(melspectrogram(y, sr, n_fft=1024, hop_length=512, n_mels=128))
    M = mfcc(S=S, n_mfcc=13); delta(M); delta(M, order=2)
"librosa, as documented" computes mfcc(y=...) from the signal, a second STFT.
"FFT alone" is the real FFT of the clip's already windowed frames, in the blocks that
coldtune uses: the part of the work no rearrangement removes, so the limit of any
implementation built on the same FFT. `--before REV` adds coldtune's features as they
were at a git revision, timed in the same rounds. Decoding: bench_decode.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from common import command, interleaved_medians, machine
from threadpoolctl import threadpool_limits

from coldtune.audio import features
from coldtune.audio.features import FeatureConfig, mel_and_mfcc

SR = 22050
REPO = Path(__file__).resolve().parent.parent


def music_like(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    """Notes of a random melody with harmonics, a noise floor: a stand-in for a preview."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = 0.005 * rng.standard_normal(n)
    note = int(0.25 * sr)
    for start in range(0, n, note):
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        seg = slice(start, min(n, start + note))
        envelope = np.exp(-np.arange(seg.stop - seg.start) / (0.1 * sr))
        for h in range(1, 6):
            y[seg] += 0.2 / h * envelope * np.sin(2 * np.pi * f0 * h * t[seg])
    return y.astype(np.float32)


def module_at(revision: str, path: str) -> ModuleType:
    """The module at `path` (e.g. coldtune/audio/features.py) as it was at a git revision,
    imported under a name of its own beside today's."""
    source = subprocess.run(
        ["git", "show", f"{revision}:{path}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    name = "before_" + Path(path).stem
    folder = Path(tempfile.mkdtemp(prefix="coldtune-before-"))
    (folder / f"{name}.py").write_text(source)
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def librosa_pair(y: np.ndarray) -> None:
    import librosa

    S = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=512, n_mels=128)
    )
    M = librosa.feature.mfcc(S=S, n_mfcc=13)
    librosa.feature.delta(M)
    librosa.feature.delta(M, order=2)


def librosa_documented(y: np.ndarray) -> None:
    import librosa

    librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=512, n_mels=128)
    )
    M = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=13, n_fft=1024, hop_length=512)
    librosa.feature.delta(M)
    librosa.feature.delta(M, order=2)


def windowed_frames(y: np.ndarray, config: FeatureConfig) -> torch.Tensor:
    """The clip's centred, Hann-windowed frames [shape=(frames, n_fft)], as coldtune's STFT."""
    padded = torch.nn.functional.pad(torch.from_numpy(y), (config.n_fft // 2, config.n_fft // 2))
    frames = padded.unfold(-1, config.n_fft, config.hop_length)
    return (frames * features._window(config.n_fft, frames.device)).contiguous()


def fft_alone(frames: torch.Tensor) -> None:
    block = features.CPU_FRAME_BLOCK
    for lo in range(0, frames.shape[0], block):
        torch.fft.rfft(frames[lo : lo + block], dim=-1)


def stages(y: np.ndarray, config: FeatureConfig) -> dict[str, object]:
    """coldtune's steps one by one, each on the output of the one before (precomputed)."""
    signal = torch.from_numpy(y)
    frames = windowed_frames(y, config)
    filterbank = features._banded(config.sr, config.n_fft, config.n_mels, frames.device)
    with torch.inference_mode():
        power = torch.fft.rfft(frames, dim=-1).abs().square()
        mel = filterbank(power)
        db = features._db(mel.clone(), config)
    return {
        "pad + window": lambda: windowed_frames(y, config),
        "FFT": lambda: fft_alone(frames),
        "pad to mel power (_mel_power_frames)": lambda: features._mel_power_frames(signal, config),
        "  of which the filterbank alone": lambda: filterbank(power),
        "dB (clamp, log10, floor)": lambda: features._db(mel.clone(), config),
        "MFCC + deltas": lambda: features._mfcc_frames(db, config, deltas=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--before", help="also time coldtune's features at this git revision")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    clips = [music_like(rng, args.seconds, SR) for _ in range(args.clips)]
    config = FeatureConfig()
    print(f"# {command()}\n# {machine()}, torch {torch.__version__}, 1 thread")
    print(f"{args.clips} clips of {args.seconds:g} s; median of {args.repeats} interleaved runs")

    runs = {
        "librosa": lambda: [librosa_pair(y) for y in clips],
        "librosa, as documented": lambda: [librosa_documented(y) for y in clips],
    }
    if args.before:
        before = module_at(args.before, "coldtune/audio/features.py")
        before_config = before.FeatureConfig()
        runs[f"coldtune at {args.before}"] = lambda: [
            before.mel_and_mfcc(y=y, config=before_config) for y in clips
        ]
    runs["coldtune"] = lambda: [mel_and_mfcc(y=y, config=config) for y in clips]
    frames = [windowed_frames(y, config) for y in clips]
    runs["FFT alone (the limit)"] = lambda: [fft_alone(f) for f in frames]

    torch.set_num_threads(1)
    with threadpool_limits(1), torch.inference_mode():
        for run in runs.values():  # warm caches (filterbanks, FFT plans, librosa's imports)
            run()
        medians = interleaved_medians(runs, args.repeats)
        steps = stages(clips[0], config)
        for run in steps.values():
            run()
        step_medians = interleaved_medians(steps, 5 * args.repeats)
    reference = medians["librosa"][0]
    print("\nlog-mel + 13 MFCC + deltas, one core:")
    for label, (seconds, times) in medians.items():
        per_clip = seconds / args.clips
        print(
            f"  {label:<26} {1000 * per_clip:6.2f} ms/clip  {1 / per_clip:7.1f} clips/s  "
            f"({reference / seconds:.2f}x librosa; runs {1000 * min(times) / args.clips:.2f}-"
            f"{1000 * max(times) / args.clips:.2f} ms)"
        )

    print(f"\ncoldtune's steps on one clip (median of {5 * args.repeats}):")
    for label, (seconds, _) in step_medians.items():
        print(f"  {label:<42} {1000 * seconds:5.2f} ms")


if __name__ == "__main__":
    main()
