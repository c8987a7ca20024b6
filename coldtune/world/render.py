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


def looped_midi(notes: np.ndarray, rendering: Rendering, seconds: float, beat: float = 1.0):
    """A pretty_midi.PrettyMIDI of `notes` (onset, duration, pitch in quarter notes),
    repeated until `seconds` are filled; notes on a beat are accented."""
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
                    start=float(starts[r, i]),
                    end=float(min(ends[r, i], seconds + 1.0)),
                )
            )
    midi = pretty_midi.PrettyMIDI(initial_tempo=rendering.bpm)
    midi.instruments.append(instrument)
    return midi


def render_clip(
    notes: np.ndarray,
    rendering: Rendering,
    out: str | os.PathLike,
    *,
    seconds: float = 30.0,
    sample_rate: int = 22050,
    beat: float = 1.0,
) -> float:
    """Render `seconds` of the looped notes to an ogg/vorbis file at `out` (atomically).

    Returns the clip's RMS level in dBFS.
    """
    binary, soundfont = fluidsynth_binary(), soundfont_path()
    midi = looped_midi(notes, rendering, seconds, beat)
    with tempfile.TemporaryDirectory(prefix="coldtune-render-") as tmp:
        midi_path, wav_path = Path(tmp) / "clip.mid", Path(tmp) / "clip.wav"
        midi.write(str(midi_path))
        result = subprocess.run(
            [binary, "-ni", "-q", "-F", str(wav_path), "-T", "wav", "-r", str(sample_rate),
             "-g", "0.5", str(soundfont), str(midi_path)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0 or not wav_path.exists():
            raise ColdtuneError(
                f"fluidsynth failed (exit {result.returncode}): {result.stderr.strip()[-300:]}"
            )
        audio, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)[: int(seconds * rate)]
    if mono.size < int(seconds * rate):
        mono = np.pad(mono, (0, int(seconds * rate) - mono.size))
    fade = int(0.5 * rate)
    mono[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.abs(mono).max())
    if peak <= 0:
        raise ColdtuneError("fluidsynth rendered silence")
    mono *= rendering.level / peak
    with atomic_path(out) as tmp_out:
        # compression_level 0.8: about 90 KB for 30 s of mono, indistinguishable here
        sf.write(tmp_out, mono, rate, format="OGG", subtype="VORBIS", compression_level=0.8)
    rms = float(np.sqrt(np.mean(mono.astype(np.float64) ** 2)))
    return 20 * np.log10(max(rms, 1e-9))
