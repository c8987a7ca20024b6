"""Compressed 30 s clips to features on one core: coldtune vs librosa.load + librosa
features, the decoder alone, soxr's qualities, and `coldtune audio extract` with workers.

    cd benchmarks; python bench_decode.py --repeats 9 --before REV --store-clips 16

Every clip is generated here (a melody of harmonic notes over noise, a different one on
each channel) and written with soundfile: 40 s files, of which the middle 30 s are the
clip. "librosa" is what a careful user writes: librosa.load(path, sr=22050, mono=True,
offset=5, duration=30) (soundfile, mono, soxr HQ), then the features as bench_features.py.
"decoder alone" is soundfile reading those 30 s as float32, nothing else: the floor under
any pipeline that decodes with libsndfile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf
import soxr
import torch
from bench_features import librosa_pair, module_at, music_like
from common import command, interleaved_medians, machine
from threadpoolctl import threadpool_limits

from coldtune.audio.decode import ClipConfig, decode_clip
from coldtune.audio.features import FeatureConfig, hz_to_mel, log_mel, mel_and_mfcc, mel_to_hz
from coldtune.workspace import Workspace

SR = 22050
REPO = Path(__file__).resolve().parent.parent
SOXR_QUALITIES = ("VHQ", "HQ", "MQ", "LQ", "QQ")
FILE_SECONDS = 40.0
CLIP_SECONDS = 30.0
# label -> (suffix, soundfile format, subtype, sample rate, channels)
FORMATS = {
    "mp3 44.1 kHz stereo": ("mp3", "MP3", "MPEG_LAYER_III", 44100, 2),
    "ogg/vorbis 44.1 kHz stereo": ("ogg", "OGG", "VORBIS", 44100, 2),
    "flac 44.1 kHz stereo": ("flac", "FLAC", "PCM_16", 44100, 2),
    "opus 48 kHz stereo": ("opus", "OGG", "OPUS", 48000, 2),
    "wav 22.05 kHz mono": ("wav", "WAV", "PCM_16", 22050, 1),
}


def write_clip(path: Path, rng: np.random.Generator, label: str) -> Path:
    _, file_format, subtype, sr, channels = FORMATS[label]
    voices = [music_like(rng, FILE_SECONDS, sr) for _ in range(channels)]
    audio = np.stack(voices, axis=1) if channels > 1 else voices[0]
    sf.write(path, 0.5 * audio, sr, format=file_format, subtype=subtype)
    return path


def read_alone(path: Path) -> np.ndarray:
    with sf.SoundFile(path) as handle:
        handle.seek(int((FILE_SECONDS - CLIP_SECONDS) / 2 * handle.samplerate))
        return handle.read(int(CLIP_SECONDS * handle.samplerate), dtype="float32")


def librosa_clip(path: Path) -> None:
    import librosa

    offset = (FILE_SECONDS - CLIP_SECONDS) / 2
    y, _ = librosa.load(path, sr=SR, mono=True, offset=offset, duration=CLIP_SECONDS)
    librosa_pair(y)


def per_clip(args, paths: dict[str, Path]) -> None:
    clip_config = ClipConfig(seconds=CLIP_SECONDS)
    config = FeatureConfig()
    runs = {}
    if args.before:
        old_decode = module_at(args.before, "coldtune/audio/decode.py")
        old_features = module_at(args.before, "coldtune/audio/features.py")
        old_clip_config = old_decode.ClipConfig(seconds=CLIP_SECONDS)
        old_config = old_features.FeatureConfig()
    for label, path in paths.items():
        runs[(label, "librosa")] = lambda path=path: librosa_clip(path)
        if args.before:
            runs[(label, f"coldtune at {args.before}")] = lambda path=path: (
                old_features.mel_and_mfcc(
                    y=old_decode.decode_clip(path, old_clip_config), config=old_config
                )
            )
        runs[(label, "coldtune")] = lambda path=path: mel_and_mfcc(
            y=decode_clip(path, clip_config), config=config
        )
        runs[(label, "decoder alone")] = lambda path=path: read_alone(path)
    with threadpool_limits(1), torch.inference_mode():
        for run in runs.values():
            run()
        medians = interleaved_medians(runs, args.repeats)
    print("\ndecode + resample to 22,050 Hz mono + log-mel, MFCC and deltas, one core:")
    for (label, who), (seconds, times) in medians.items():
        reference = medians[(label, "librosa")][0]
        print(
            f"  {label:<27} {who:<22} {1000 * seconds:6.1f} ms/clip  "
            f"({reference / seconds:4.2f}x librosa; runs {1000 * min(times):.1f}-"
            f"{1000 * max(times):.1f} ms)"
        )


def resampler_qualities(args) -> None:
    """soxr's qualities (and a polyphase filter) on a 44.1 kHz clip: time, and how far
    each lands from HQ, in samples and in log-mel dB."""
    y = music_like(np.random.default_rng(1), CLIP_SECONDS, 44100)
    hq = soxr.resample(y, 44100, SR, quality="HQ")
    hq_mel = log_mel(y=hq, sr=SR)
    centres = mel_to_hz(np.linspace(0, hz_to_mel(SR / 2), hq_mel.shape[0] + 2))[1:-1]
    resamplers = {q: lambda q=q: soxr.resample(y, 44100, SR, quality=q) for q in SOXR_QUALITIES}
    # a polyphase filter (a Kaiser-windowed FIR applied at the lower rate), for comparison
    resamplers["polyphase"] = lambda: scipy.signal.resample_poly(y, 1, 2).astype(np.float32)
    with threadpool_limits(1), torch.inference_mode():
        medians = interleaved_medians(resamplers, args.repeats)
    print("\n44.1 -> 22.05 kHz of a 30 s clip, one core; difference from soxr HQ:")
    for q, resample in resamplers.items():
        out = resample()
        error = out - hq
        mel_db = np.abs(log_mel(y=out, sr=SR) - hq_mel)
        if not error.any():
            print(f"  {q:<9} {1000 * medians[q][0]:5.2f} ms  (the reference)")
            continue
        relative_db = 10 * np.log10(np.mean(error**2) / np.mean(hq**2))
        print(
            f"  {q:<9} {1000 * medians[q][0]:5.2f} ms  samples: max |diff| "
            f"{np.abs(error).max():.1e}, error {relative_db:6.1f} dB re signal;  "
            f"log-mel: max {mel_db.max():6.3f} dB, below 10 kHz "
            f"{mel_db[centres < 10_000].max():6.3f} dB, mean {mel_db.mean():.4f} dB"
        )


def package_at(revision: str, folder: Path) -> Path:
    """The coldtune package as it was at a git revision, unpacked under folder."""
    folder.mkdir()
    archive = subprocess.run(
        ["git", "archive", revision, "coldtune"], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def extraction(args, rng: np.random.Generator, folder: Path) -> None:
    """`coldtune audio extract` (the command, start-up included) on mixed-format clips,
    today's coldtune and, with --before, the one at that revision, in alternate runs."""
    clips = folder / "clips"
    clips.mkdir()
    labels = ["mp3 44.1 kHz stereo", "ogg/vorbis 44.1 kHz stereo", "flac 44.1 kHz stereo"]
    for i in range(args.store_clips):
        label = labels[i % len(labels)]
        write_clip(clips / f"TR{i:06d}.{FORMATS[label][0]}", rng, label)
    # the `coldtune` command, run by this interpreter, with coldtune found first on the
    # path given: today's (where this script imports it from) or the earlier revision's
    coldtune = [sys.executable, "-c", "from coldtune.cli import app; app()"]
    versions = {"coldtune": Path(__import__("coldtune").__file__).parent.parent}
    if args.before:
        versions[f"coldtune at {args.before}"] = package_at(args.before, folder / "before")
    times: dict[str, list[float]] = {name: [] for name in versions}
    inside: dict[str, list[float]] = {name: [] for name in versions}  # as extract() counts
    for repeat in range(args.store_repeats):
        for name, root in versions.items():
            workspace = folder / f"W{repeat}"
            environment = {**os.environ, "PYTHONPATH": str(root)}
            start = time.perf_counter()
            done = subprocess.run(
                [*coldtune, "audio", "extract", str(clips), "--workspace", str(workspace)]
                + ["--workers", str(args.workers)],
                capture_output=True,
                text=True,
                env=environment,
            )
            times[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"{name} audio extract failed:\n{done.stdout}{done.stderr}")
            inside[name].append(
                json.loads((Workspace(workspace).features_dir / "summary.json").read_text())[
                    "seconds"
                ]
            )
            shutil.rmtree(workspace)
    print(
        f"\ncoldtune audio extract --workers {args.workers}, {args.store_clips} clips (mp3, "
        "ogg, flac in turn, 44.1 kHz stereo, 40 s files); the command's wall time, and "
        "extract()'s own (workers' start-up included, the command's imports not):"
    )
    for name, runs in times.items():
        seconds, own = statistics.median(runs), statistics.median(inside[name])
        print(
            f"  {name:<22} {args.store_clips / seconds:5.1f} clips/s ({seconds:5.1f} s; runs "
            f"{', '.join(f'{t:.1f}' for t in runs)}), extract() {args.store_clips / own:5.1f} "
            f"clips/s ({own:.1f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--before", help="also time coldtune at this git revision")
    parser.add_argument("--store-clips", type=int, default=48)
    parser.add_argument("--store-repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma-separated: clips,resampler,extract")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    rng = np.random.default_rng(0)
    print(f"# {command()}\n# {machine()}, torch {torch.__version__}, soxr {soxr.__version__}")
    print(f"# libsndfile {sf.__libsndfile_version__}; one core = 1 thread; medians of runs")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if "clips" not in skip:
            paths = {
                label: write_clip(Path(tmp) / f"clip.{suffix}", rng, label)
                for label, (suffix, *_) in FORMATS.items()
            }
            per_clip(args, paths)
        if "resampler" not in skip:
            resampler_qualities(args)
        if "extract" not in skip:
            extraction(args, rng, Path(tmp))


if __name__ == "__main__":
    main()
