"""Notes to a compressed audio clip: MIDI written by coldtune, rendered by FluidSynth
with the General MIDI soundfont that pretty_midi ships (TimGM6mb.sf2), encoded as
ogg/vorbis by libsndfile."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from coldtune.errors import ColdtuneError
from coldtune.workspace import atomic_path


@dataclass(frozen=True)
class Rendering:
    """How an artist plays: one General MIDI program, a tempo, a register, a touch."""

    program: int  # General MIDI program, 0-127
    bpm: float  # quarter notes per minute
    transpose: int  # semitones
    velocity: int  # MIDI velocity of unaccented notes
    level: float  # peak level of the clip, 0-1


def soundfont_path() -> Path:
    import pretty_midi

    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.exists():
        raise ColdtuneError(
            f"{path}: pretty_midi's General MIDI soundfont is missing; reinstall pretty_midi"
        )
    return path


def fluidsynth_binary() -> str:
    found = shutil.which("fluidsynth")
    if found is None:
        raise ColdtuneError(
            "fluidsynth not found: `make setup` installs it (Debian package fluidsynth), "
            "or run: apt-get install --no-install-recommends fluidsynth"
        )
    return found


def looped_instrument(
    notes: np.ndarray, rendering: Rendering, seconds: float, beat: float = 1.0, offset: float = 0.0
):
    """A pretty_midi.Instrument playing `notes` (onset, duration, pitch in quarter notes)
    from `offset` s, repeated until `seconds` are filled; notes on a beat are accented."""
    import pretty_midi

    quarter = 60.0 / rendering.bpm
    length = float((notes[:, 0] + notes[:, 1]).max())
    # a bar's rest between repetitions, as a player would leave
    period = (np.ceil(length / beat) * beat + beat) * quarter
    repeats = int(np.ceil(seconds / period)) + 1
    starts = (notes[:, 0] * quarter)[None, :] + (np.arange(repeats) * period)[:, None]
    ends = starts + (notes[:, 1] * quarter)[None, :]
    pitches = np.clip(notes[:, 2] + rendering.transpose, 0, 127).astype(int)
    on_beat = np.isclose(np.mod(notes[:, 0], beat), 0.0)
    velocities = np.clip(rendering.velocity + np.where(on_beat, 12, 0), 1, 127).astype(int)
    instrument = pretty_midi.Instrument(program=rendering.program)
    for r in range(repeats):
        for i in np.flatnonzero(starts[r] < seconds):
            instrument.notes.append(
                pretty_midi.Note(
                    velocity=int(velocities[i]),
                    pitch=int(pitches[i]),
                    start=offset + float(starts[r, i]),
                    end=offset + float(min(ends[r, i], seconds + 1.0)),
                )
            )
    return instrument


@dataclass(frozen=True)
class ClipJob:
    """One clip to render: the notes, how they are played, where the ogg goes."""

    notes: np.ndarray
    rendering: Rendering
    out: str
    beat: float = 1.0


BATCH = 15
"""Clips per FluidSynth run: one run plays up to 15 songs one after another, each on a
MIDI channel of its own (16 channels, less the drums' 10th), with GAP_S of silence
between them for the release and the reverb to die away, and the output is cut back
into clips. Starting FluidSynth once per batch instead of once per song saved 10-25%
(measured 228-252 against 283-315 ms per clip; synthesis, about 95 ms, and the vorbis
encoder, about 105 ms, are the rest). The chorus and reverb carry state from song to
song, so a clip's samples depend on the batch it was rendered in: batches follow the
songs' order, so a world is the same for a seed, but clips re-rendered after an
interrupted build may differ from an uninterrupted build's in those effects."""
GAP_S = 3.0


def render_clips(jobs: list[ClipJob], *, seconds: float = 30.0, sr: int = 22050) -> list[float]:
    """Render each job's `seconds` of looped notes to an ogg/vorbis file (atomically),
    in runs of BATCH songs. Returns each clip's RMS level in dBFS."""
    levels = []
    for lo in range(0, len(jobs), BATCH):
        levels.extend(_render_batch(jobs[lo : lo + BATCH], seconds, sr))
    return levels


def _render_batch(jobs: list[ClipJob], seconds: float, sr: int) -> list[float]:
    import pretty_midi

    binary, soundfont = fluidsynth_binary(), soundfont_path()
    segment = seconds + GAP_S
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for k, job in enumerate(jobs):
        midi.instruments.append(
            looped_instrument(job.notes, job.rendering, seconds, job.beat, offset=k * segment)
        )
    with tempfile.TemporaryDirectory(prefix="coldtune-render-") as tmp:
        midi_path, wav_path = Path(tmp) / "clips.mid", Path(tmp) / "clips.wav"
        midi.write(str(midi_path))
        result = subprocess.run(
            [binary, "-ni", "-q", "-F", str(wav_path), "-T", "wav", "-r", str(sr),
             "-g", "0.5", str(soundfont), str(midi_path)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0 or not wav_path.exists():
            raise ColdtuneError(
                f"fluidsynth failed (exit {result.returncode}): {result.stderr.strip()[-300:]}"
            )
        audio, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    mono_all = audio.mean(axis=1)
    n = int(seconds * rate)
    levels = []
    for k, job in enumerate(jobs):
        start = int(round(k * segment * rate))
        mono = mono_all[start : start + n].copy()
        if mono.size < n:
            mono = np.pad(mono, (0, n - mono.size))
        levels.append(_finish(mono, rate, job))
    return levels


def _finish(mono: np.ndarray, rate: int, job: ClipJob) -> float:
    fade = int(0.5 * rate)
    mono[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.abs(mono).max())
    if peak <= 0:
        raise ColdtuneError(f"fluidsynth rendered silence for {job.out}")
    mono *= job.rendering.level / peak
    with atomic_path(job.out) as tmp_out:
        # compression_level 0.8: about 90 KB for 30 s of mono
        sf.write(tmp_out, mono, rate, format="OGG", subtype="VORBIS", compression_level=0.8)
    rms = float(np.sqrt(np.mean(mono.astype(np.float64) ** 2)))
    return 20 * np.log10(max(rms, 1e-9))


def render_clip(
    notes: np.ndarray,
    rendering: Rendering,
    out: str | os.PathLike,
    *,
    seconds: float = 30.0,
    sr: int = 22050,
    beat: float = 1.0,
) -> float:
    """Render one clip (see render_clips); returns its RMS level in dBFS."""
    job = ClipJob(notes, rendering, str(out), beat)
    return render_clips([job], seconds=seconds, sr=sr)[0]
