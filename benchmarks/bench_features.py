"""Audio features: coldtune (torch) vs librosa on 30 s clips, one core; decode + features
from compressed files; extraction into the feature store with worker processes.

    python benchmarks/bench_features.py --clips 8 --repeats 5

"librosa" is the pair computed the efficient way a careful user would write it (one
STFT; MFCCs from the same log-mel):
    S = power_to_db(melspectrogram(y, sr, n_fft=1024, hop_length=512, n_mels=128))
    M = mfcc(S=S, n_mfcc=13); delta(M); delta(M, order=2)
"librosa, as documented" computes mfcc(y=...) from the signal, a second STFT.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common import command, interleaved_medians, machine
from threadpoolctl import threadpool_limits

from coldtune.audio.decode import ClipConfig, decode_clip
from coldtune.audio.features import FeatureConfig, mel_and_mfcc

SR = 22050


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--store-clips", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    clips = [music_like(rng, args.seconds, SR) for _ in range(args.clips)]
    config = FeatureConfig()
    print(f"# {command()}\n# {machine()}")
    print(f"{args.clips} clips of {args.seconds:g} s; median of {args.repeats} interleaved runs")

    # ---- features alone, one core
    torch.set_num_threads(1)
    with threadpool_limits(1):
        for y in clips[:2]:  # warm caches (filterbanks, FFT plans, librosa's imports)
            librosa_pair(y)
            mel_and_mfcc(y=y, config=config)
        medians = interleaved_medians(
            {
                "librosa": lambda: [librosa_pair(y) for y in clips],
                "librosa, as documented": lambda: [librosa_documented(y) for y in clips],
                "coldtune": lambda: [mel_and_mfcc(y=y, config=config) for y in clips],
            },
            args.repeats,
        )
    reference = medians["librosa"][0]
    print("\nlog-mel + 13 MFCC + deltas, one core:")
    for label, (seconds, _) in medians.items():
        per_clip = seconds / args.clips
        print(
            f"  {label:<24} {1000 * per_clip:7.1f} ms/clip  {1 / per_clip:7.1f} clips/s  "
            f"({reference / seconds:.1f}x librosa)"
        )

    # ---- decode + resample + features, one core, from compressed files
    print("\ndecode + resample to 22,050 Hz mono + both features, one core:")
    formats = {
        "ogg/vorbis 44.1 kHz stereo": ("ogg", "OGG", "VORBIS", 44100),
        "mp3 44.1 kHz stereo": ("mp3", "MP3", "MPEG_LAYER_III", 44100),
        "opus 48 kHz stereo": ("opus", "OGG", "OPUS", 48000),
        "flac 44.1 kHz stereo": ("flac", "FLAC", "PCM_16", 44100),
        "wav 22.05 kHz mono": ("wav", "WAV", "PCM_16", 22050),
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for label, (suffix, file_format, subtype, sr) in formats.items():
            audio = music_like(rng, args.seconds + 10, sr)
            channels = 1 if label.endswith("mono") else 2
            data = np.stack([audio] * channels, axis=1) if channels == 2 else audio
            paths[label] = Path(tmp) / f"clip.{suffix}"
            sf.write(paths[label], 0.5 * data, sr, format=file_format, subtype=subtype)
        clip_config = ClipConfig(seconds=args.seconds)

        def ours(path):
            mel_and_mfcc(y=decode_clip(path, clip_config), config=config)

        def theirs(path):
            import librosa

            y, _ = librosa.load(path, sr=SR, mono=True, offset=5.0, duration=args.seconds)
            librosa_pair(y)

        with threadpool_limits(1):
            runs = {}
            for label, path in paths.items():
                runs[f"coldtune {label}"] = lambda path=path: ours(path)
                runs[f"librosa  {label}"] = lambda path=path: theirs(path)
            for run in runs.values():
                run()
            medians = interleaved_medians(runs, args.repeats)
        for label, (seconds, _) in medians.items():
            print(f"  {label:<38} {seconds:6.3f} s/clip  {args.seconds / seconds:6.0f}x realtime")

        # ---- the feature store, all cores
        from coldtune.audio.store import extract

        store_dir = Path(tmp) / "clips"
        store_dir.mkdir()
        sources = list(paths.values())
        for i in range(args.store_clips):
            source = sources[i % len(sources)]
            os.link(source, store_dir / f"TR{i:06d}{source.suffix}")
        workers = os.cpu_count() or 1
        times = []
        for repeat in range(max(1, args.repeats // 2)):
            start = time.perf_counter()
            summary = extract(
                store_dir, Path(tmp) / f"features{repeat}", workers=workers, clips_per_shard=16
            )
            times.append(time.perf_counter() - start)
            assert summary.extracted == args.store_clips, summary
        seconds = statistics.median(times)
        print(
            f"\ncoldtune audio extract, {args.store_clips} mixed-format clips, {workers} "
            f"processes: {args.store_clips / seconds:.1f} clips/s "
            f"({seconds / args.store_clips * workers:.3f} s per clip per core, "
            f"start-up included; median of {len(times)})"
        )


if __name__ == "__main__":
    main()
