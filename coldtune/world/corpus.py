"""Real compositions from the corpus bundled inside music21, as notes and metadata.

Every piece comes from a file in music21's own package (no download): ABC files of
many tunes each (O'Neill's Music of Ireland 1850, Ryan's Mammoth Collection 1883,
Aird's Airs, the Essen folk song collection), MusicXML (Bach chorales, Monteverdi
madrigals, Trecento pieces) and Humdrum (Palestrina masses). music21 parses them; the
notes go out as plain (onset, duration, pitch) rows in quarter notes, so that MIDI is
written by coldtune itself: music21's MIDI writer raises on a good share of the
O'Neill tunes (grace notes, odd tuplets), and a piece is only lost when even parsing
fails. Metadata (title, tune type, region, meter, mode) comes from the files' own
fields where they exist (ABC's T:, R:, M:, K:, O:), else from the score.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from coldtune.errors import ColdtuneError

PARSER_VERSION = 1
"""Bumped whenever parse_piece gives other notes or metadata, so that cached parses of
an older version are not used."""


class PieceUnusable(ColdtuneError):
    """A piece of the corpus that cannot become a clip; the message says why."""


@dataclass(frozen=True)
class PieceRef:
    """Where a piece lives: a corpus file, and for ABC files the tune's X: number."""

    collection: str
    path: str  # relative to music21's corpus folder
    number: int | None = None  # ABC X: field; None for one-piece files

    @property
    def key(self) -> str:
        return f"{self.path}#{self.number}" if self.number is not None else self.path


@dataclass
class Piece:
    ref: PieceRef
    title: str
    tune_type: str
    region: str
    meter: str
    mode: str  # "major", "minor", or a church mode for modal tunes
    notes: np.ndarray  # (n, 3) float64: onset, duration (quarter notes), MIDI pitch
    tempo_bpm: float | None = None  # the file's own tempo (ABC Q:), if any

    @property
    def quarter_notes(self) -> float:
        return float((self.notes[:, 0] + self.notes[:, 1]).max())


@dataclass(frozen=True)
class Collection:
    """One source of the corpus, and what its pieces are."""

    folder: str | tuple[str, ...]  # folders of music21's corpus, searched recursively
    pattern: str | tuple[str, ...]
    style: str  # the broad style tag: "irish traditional", "baroque", ...
    region: str  # default region when the file does not say
    tune_type: str  # default tune type when the file does not say
    abc: bool = False  # files hold many tunes, split at X:
    exclude: str | None = None  # regex of file names to leave out


COLLECTIONS: dict[str, Collection] = {
    "oneills1850": Collection(
        "oneills1850", "*.abc", "irish traditional", "irish", "air", abc=True
    ),
    "ryansMammoth": Collection(
        "ryansMammoth", "*.abc", "american fiddle", "american", "reel", abc=True
    ),
    "airdsAirs": Collection(
        "airdsAirs", "*.abc", "scottish traditional", "scottish", "air", abc=True
    ),
    "essenFolksong": Collection(
        "essenFolksong", "*.abc", "folk song", "german", "folk song", abc=True,
        exclude=r"^test",
    ),
    "bach": Collection("bach", "bwv*.mxl", "baroque", "german", "chorale"),
    "palestrina": Collection("palestrina", "*.krn", "renaissance", "italian", "mass movement"),
    "monteverdi": Collection("monteverdi", "madrigal*.mxl", "renaissance", "italian", "madrigal"),
    "trecento": Collection("trecento", "*.xml", "medieval", "italian", "ballata"),
    "fifeAndMinstrelsy": Collection(
        ("miscFolk", "nottingham-dataset"), "*.abc", "english and american folk tunes",
        "english", "folk tune", abc=True,
    ),
    # the rest that parses: single works and movements of the composers music21 ships
    "masters": Collection(
        ("beethoven", "mozart", "haydn", "josquin", "schumann_robert", "schumann_clara",
         "chopin", "handel", "corelli", "schubert", "verdi", "weber", "joplin", "cpebach",
         "beach", "ciconia", "luca", "lusitano", "johnson_j_r", "liliuokalani", "schoenberg",
         "webern", "leadSheet"),
        ("*.mxl", "*.xml", "*.musicxml", "*.krn", "*.abc"), "classical", "european",
        "art music",
    ),
}  # fmt: skip


def corpus_root() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def _abc_tunes(text: str) -> list[tuple[int, str]]:
    """(X: number, the tune's text with the file's header) for each tune of an ABC file."""
    parts = re.split(r"(?m)^X:", text)
    header, tunes = parts[0], []
    for part in parts[1:]:
        match = re.match(r"\s*(\d+)", part)
        if match:
            tunes.append((int(match.group(1)), header + "X:" + part))
    return tunes


@lru_cache(maxsize=64)
def _abc_file(path: str) -> dict[int, str]:
    text = (corpus_root() / path).read_text(encoding="utf-8", errors="replace")
    tunes: dict[int, str] = {}
    for number, tune in _abc_tunes(text):
        tunes.setdefault(number, tune)  # a repeated X: keeps its first tune
    return tunes


def list_pieces(collection: str) -> list[PieceRef]:
    """Every piece of a collection, in a fixed order (cheap: ABC files are only split)."""
    spec = COLLECTIONS[collection]
    root = corpus_root()
    folders = (spec.folder,) if isinstance(spec.folder, str) else spec.folder
    patterns = (spec.pattern,) if isinstance(spec.pattern, str) else spec.pattern
    paths = sorted({p for f in folders for pattern in patterns for p in (root / f).rglob(pattern)})
    refs = []
    for path in paths:
        if spec.exclude and re.search(spec.exclude, path.name):
            continue
        relative = str(path.relative_to(root))
        if spec.abc:
            refs.extend(PieceRef(collection, relative, n) for n in _abc_file(relative))
        else:
            refs.append(PieceRef(collection, relative))
    return refs


# --------------------------------------------------------------------------- metadata


def _abc_field(text: str, field: str) -> str | None:
    match = re.search(rf"(?m)^{field}:\s*(.*?)\s*$", text)
    return match.group(1).strip() if match and match.group(1).strip() else None


# (pattern in the R: field or the title, tune type), first match wins
TUNE_TYPES: list[tuple[str, str]] = [
    (r"slip ?jig", "slip jig"),
    (r"single ?jig|double ?jig|\bjig", "jig"),
    (r"strathspey", "strathspey"),
    (r"hornpipe", "hornpipe"),
    (r"\breel", "reel"),
    (r"polka", "polka"),
    (r"waltz", "waltz"),
    (r"march", "march"),
    (r"clog", "clog"),
    (r"set dance|long dance", "set dance"),
    (r"schottische", "schottische"),
    (r"quadrille|cotillon|contra", "country dance"),
    (r"xiaodiao", "xiaodiao"),
    (r"shange", "shange"),
    (r"haozi", "haozi"),
    (r"kinder|wiegen", "children's song"),
    (r"relig|geistlich", "religious song"),
    (r"soldat|krieg", "soldier song"),
    (r"hochzeit", "wedding song"),
    (r"liebe", "love song"),
    (r"ballade|romanze|sage|erzaehl", "ballad"),
    (r"scherz|lustig", "humorous song"),
    (r"tanz", "dance song"),
    (r"\bair\b|lament|slow", "air"),
]

REGIONS: list[tuple[str, str]] = [
    (r"china", "chinese"),
    (r"irland", "irish"),
    (r"luxemburg", "luxembourgish"),
    (r"lothringen", "lorrainian"),
    (r"oesterreich", "austrian"),
    (r"schweiz", "swiss"),
    (r"niederlande", "dutch"),
    (r"ungarn", "hungarian"),
    (r"jugoslawien|gottschee", "gottscheer"),
    (r"polen|schlesien", "silesian"),
    (r"deutschland", "german"),
]


def _first_match(text: str | None, table: list[tuple[str, str]]) -> str | None:
    if text:
        lowered = text.lower()
        for pattern, name in table:
            if re.search(pattern, lowered):
                return name
    return None


_MODES = {"": "major", "maj": "major", "m": "minor", "min": "minor", "dor": "dorian",
          "mix": "mixolydian", "phr": "phrygian", "lyd": "lydian", "loc": "locrian",
          "aeo": "minor", "ion": "major"}  # fmt: skip


def _abc_mode(key: str | None) -> str | None:
    match = re.match(r"\s*[A-Ga-g][#b]?\s*([A-Za-z]*)", key or "")
    if not match:
        return None
    return _MODES.get(match.group(1).lower()[:3])


def _abc_tempo(q: str | None) -> float | None:
    """ABC Q: as quarter notes per minute ("Q:90" is in the unit note length's beats,
    "Q:1/4=90" names the beat); None when absent or unreadable."""
    if not q:
        return None
    match = re.search(r"(?:(\d+)/(\d+)\s*=\s*)?(\d+)", q)
    if not match:
        return None
    bpm = float(match.group(3))
    if match.group(1):
        bpm *= 4 * int(match.group(1)) / int(match.group(2))
    return bpm if 20 <= bpm <= 400 else None


# --------------------------------------------------------------------------- parsing


def _notes(score) -> np.ndarray:
    """(onset, duration, pitch) of every sounding note, ties merged, grace notes dropped.
    Merges the ties in `score` itself: a copy (music21's default) was half of the parse."""
    rows = []
    score.stripTies(inPlace=True)
    for element in score.flatten().notes:
        duration = float(element.quarterLength)
        if duration <= 0:  # grace notes have no duration of their own
            continue
        onset = float(element.offset)
        for pitch in element.pitches:
            rows.append((onset, duration, float(pitch.midi)))
    if not rows:
        return np.zeros((0, 3))
    notes = np.asarray(rows, dtype=np.float64)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]


def _score_meter(score) -> str | None:
    from music21 import meter

    found = score.recurse().getElementsByClass(meter.TimeSignature)
    return found[0].ratioString if found else None


def _score_mode(score) -> str:
    from music21 import key

    found = score.recurse().getElementsByClass(key.Key)
    if found and found[0].mode in ("major", "minor"):
        return found[0].mode
    analysed = score.analyze("key")
    return analysed.mode if analysed.mode in ("major", "minor") else "major"


@contextmanager
def _without_beams() -> Iterator[None]:
    """music21's ABC reader beams every part it reads (abcToStreamPart): notation
    only, which leaves notes and offsets as they are, yet 40% of an ABC tune's parse.
    Inside this block a Part's makeBeams does nothing."""
    from music21 import stream

    assert "makeBeams" not in stream.Part.__dict__, "music21 changed: Part has its own makeBeams"
    stream.Part.makeBeams = lambda self, *args, **kwargs: None
    try:
        yield
    finally:
        del stream.Part.makeBeams


def parse_piece(ref: PieceRef) -> Piece:
    """Parse one piece into notes and metadata, or raise PieceUnusable with the reason."""
    from music21 import converter

    spec = COLLECTIONS[ref.collection]
    try:
        if spec.abc:
            text = _abc_file(ref.path)[ref.number]
            with _without_beams():
                score = converter.parse(text, format="abc")
        else:
            text = None
            score = converter.parse(corpus_root() / ref.path)
    except Exception as error:  # noqa: BLE001 - music21 raises many kinds; all mean "unusable"
        raise PieceUnusable(f"music21 cannot parse it: {type(error).__name__}: {error}") from None
    title = None
    if text is not None:
        title = _abc_field(text, "T")
        rhythm = _abc_field(text, "R")
        tune_type = _first_match(rhythm, TUNE_TYPES) or _first_match(title, TUNE_TYPES)
        region = _first_match(_abc_field(text, "O"), REGIONS)
        meter_text = _abc_field(text, "M")
        meter_text = {"C": "4/4", "C|": "2/2"}.get(meter_text or "", meter_text)
        mode = _abc_mode(_abc_field(text, "K"))
        tempo = _abc_tempo(_abc_field(text, "Q"))
    else:
        tune_type = region = meter_text = mode = tempo = None
    # what the file does not say is read from the score before _notes merges its ties
    try:
        meter_text = meter_text or _score_meter(score) or "4/4"
        mode = mode or _score_mode(score)
    except Exception as error:  # noqa: BLE001
        raise PieceUnusable(f"no meter or key: {type(error).__name__}: {error}") from None
    try:
        notes = _notes(score)
    except Exception as error:  # noqa: BLE001
        raise PieceUnusable(f"no notes: {type(error).__name__}: {error}") from None
    if len(notes) < 8:
        raise PieceUnusable(f"only {len(notes)} notes")
    if not (0 <= notes[:, 2].min() and notes[:, 2].max() <= 127):
        raise PieceUnusable("pitches outside MIDI's range")
    if title is None:
        title = getattr(score.metadata, "title", None) or ""
        title = re.sub(r"\s*--\s*\w+\s*$", "", str(title)).strip()
        if not title or re.fullmatch(r"(movement|mvmt)?\s*\d*", title, re.IGNORECASE):
            # movements of a work: "beethoven/opus18no1/movement3.mxl" -> its path
            title = " ".join(Path(ref.path).with_suffix("").parts).replace("_", " ")
    return Piece(
        ref=ref,
        title=re.sub(r"\s+", " ", title.split(" -- ")[0]).strip(),
        tune_type=tune_type or spec.tune_type,
        region=region or spec.region,
        meter=meter_text,
        mode=mode,
        notes=notes,
        tempo_bpm=tempo,
    )
