"""`coldtune world build`: the demo world, from corpus to clips, tags and play counts.

Steps, each resumable: choose pieces per collection (seeded) and parse them (a parse
cache shared by all worlds on the machine), group songs into artists, render every
song's 30 s clip in worker processes (a clip file is written atomically, so a re-run
renders only what is missing), then write the metadata, the tags, the simulated play
counts and, last, world.json, whose presence with the same settings makes the next
build instant.

Output folder:

    train_triplets.txt      user<TAB>song<TAB>count, the Taste Profile's format
    tracks.csv              song_id, track_id, artist_id, artist, title, collection,
                            style, region, tune_type, meter, meter_class, mode,
                            instrument, family, program, bpm, tempo_class, register,
                            source
    unique_tracks.txt       track_id<SEP>song_id<SEP>artist<SEP>title, as the MSD's
    clips/A/B/C/TR....ogg   30 s clips named by track id, as the MSD's 7digital clips
    clips.csv               song_id, path: the manifest for `coldtune audio extract`
    lastfm/A/B/C/TR....json Last.fm-style tags: {"track_id", "artist", "title",
                            "timestamp", "tags": [[tag, weight], ...]}
    hidden/                 the simulation's hidden variables: diagnostics only
    unusable_pieces.tsv     pieces of the corpus that could not be used, with reasons
    world.json              settings, counts and timings
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from coldtune.errors import ParameterError
from coldtune.workspace import atomic_path, write_json
from coldtune.world.corpus import (
    COLLECTIONS,
    PARSER_VERSION,
    Piece,
    PieceRef,
    PieceUnusable,
    list_pieces,
    parse_piece,
)
from coldtune.world.listeners import ListenerConfig, simulate_listeners
from coldtune.world.render import BATCH, ClipJob, Rendering, render_clips

# Share of songs from each collection; more than a collection holds goes to the others.
COLLECTION_SHARES: dict[str, float] = {
    "oneills1850": 0.22,
    "ryansMammoth": 0.13,
    "airdsAirs": 0.10,
    "essenFolksong": 0.34,
    "fifeAndMinstrelsy": 0.02,
    "bach": 0.08,
    "palestrina": 0.05,
    "monteverdi": 0.02,
    "trecento": 0.03,
    "masters": 0.01,
}

WORLD_VERSION = 3
"""Bumped whenever a change to the builder changes the world a seed gives: a world of
another version is not taken for this one's."""

WORLD_SIZES: dict[str, tuple[int, int]] = {  # songs, users
    "small": (150, 2000),
    "default": (2000, 20000),
    "paper": (9330, 20000),
}


@dataclass(frozen=True)
class WorldConfig:
    songs: int = 2000
    users: int = 20000
    seed: int = 0
    seconds: float = 30.0
    sr: int = 22050
    listeners: ListenerConfig = field(default_factory=ListenerConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def world_config(size: str, *, seed: int = 0, audio_share: float | None = None) -> WorldConfig:
    if size not in WORLD_SIZES:
        raise ParameterError(f"size must be one of {', '.join(WORLD_SIZES)}, got {size!r}")
    songs, users = WORLD_SIZES[size]
    listeners = ListenerConfig(users=users)
    if audio_share is not None:
        listeners = dataclasses.replace(listeners, audio_share=audio_share)
    return WorldConfig(songs=songs, users=users, seed=seed, listeners=listeners.validate())


# --------------------------------------------------------------------------- instruments

# family -> General MIDI (program, name, the pitch the instrument sits around)
INSTRUMENTS: dict[str, list[tuple[int, str, int]]] = {
    "keyboard": [(0, "piano", 64), (6, "harpsichord", 64), (19, "church organ", 60),
                 (21, "accordion", 67)],
    "plucked": [(24, "nylon guitar", 60), (25, "steel guitar", 62), (46, "harp", 67),
                (105, "banjo", 67), (107, "koto", 67)],
    "bowed strings": [(40, "violin", 74), (41, "viola", 62), (42, "cello", 50),
                      (48, "string ensemble", 62), (110, "fiddle", 72)],
    "woodwind": [(73, "flute", 76), (74, "recorder", 74), (71, "clarinet", 64),
                 (68, "oboe", 70), (75, "pan flute", 74)],
    "brass": [(56, "trumpet", 69), (60, "french horn", 57), (61, "brass section", 60),
              (57, "trombone", 50)],
    "voice": [(52, "choir", 62), (53, "voice oohs", 64)],
    "mallets": [(11, "vibraphone", 72), (12, "marimba", 67), (8, "celesta", 79)],
    "reed": [(109, "bagpipe", 70), (22, "harmonica", 67)],
}  # fmt: skip

# style -> weight of each instrument family: every collection gets several
FAMILY_WEIGHTS: dict[str, dict[str, float]] = {
    "fiddle": {"bowed strings": 0.35, "woodwind": 0.2, "keyboard": 0.15, "plucked": 0.15,
               "reed": 0.1, "mallets": 0.05},
    "folk": {"voice": 0.15, "plucked": 0.25, "keyboard": 0.2, "woodwind": 0.2,
             "bowed strings": 0.1, "mallets": 0.1},
    "chorale": {"keyboard": 0.35, "voice": 0.25, "bowed strings": 0.2, "brass": 0.2},
    "vocal polyphony": {"voice": 0.45, "bowed strings": 0.2, "keyboard": 0.2, "brass": 0.15},
    "medieval": {"woodwind": 0.3, "plucked": 0.3, "voice": 0.2, "bowed strings": 0.2},
    "chamber": {"bowed strings": 0.4, "keyboard": 0.3, "woodwind": 0.15, "brass": 0.15},
}  # fmt: skip
COLLECTION_FAMILIES = {
    "oneills1850": "fiddle", "ryansMammoth": "fiddle", "airdsAirs": "fiddle",
    "essenFolksong": "folk", "bach": "chorale", "palestrina": "vocal polyphony",
    "monteverdi": "vocal polyphony", "trecento": "medieval", "fifeAndMinstrelsy": "fiddle",
    "masters": "chamber",
}  # fmt: skip

# tune type -> tempo in quarter notes per minute, before the artist's own factor
TEMPO: dict[str, float] = {
    "reel": 200, "hornpipe": 160, "jig": 165, "slip jig": 165, "strathspey": 130,
    "polka": 190, "march": 120, "waltz": 160, "clog": 160, "set dance": 140,
    "country dance": 180, "schottische": 140, "air": 80, "chorale": 70,
    "mass movement": 120, "madrigal": 90, "ballata": 100, "religious song": 80,
    "xiaodiao": 80, "shange": 75, "haozi": 110, "children's song": 120,
    "dance song": 130, "humorous song": 120, "soldier song": 110, "wedding song": 110,
    "art music": 100, "folk tune": 110,
}  # fmt: skip
DEFAULT_TEMPO = 95.0

COLLECTION_NAMES = {
    "oneills1850": "O'Neill's Music of Ireland (1850)",
    "ryansMammoth": "Ryan's Mammoth Collection (1883)",
    "airdsAirs": "Aird's Selection of Airs",
    "essenFolksong": "Essen folk song collection",
    "bach": "Bach chorales",
    "palestrina": "Palestrina masses",
    "monteverdi": "Monteverdi madrigals",
    "trecento": "Trecento",
    "fifeAndMinstrelsy": "American fife tunes and Northumbrian minstrelsy",
    "masters": "Works of the masters",
}

_FIRST = ("Aoife", "Brendan", "Ciara", "Declan", "Eilis", "Fergus", "Grainne", "Hugh",
          "Isla", "Jonas", "Katrin", "Liang", "Mei", "Niamh", "Oskar", "Paola", "Quentin",
          "Rosa", "Seamus", "Tilde", "Ulla", "Vera", "Wen", "Xavier", "Yara", "Zeno")  # fmt: skip
_LAST = ("Byrne", "Carrick", "Doyle", "Falk", "Gallagher", "Hart", "Ingram", "Kerr",
         "Lindqvist", "Moreau", "Nolan", "Ostrow", "Pryce", "Quinlan", "Reyes", "Sauer",
         "Tan", "Ulrich", "Vance", "Walsh", "Yates", "Zhou")  # fmt: skip
_ENSEMBLE = ("Consort", "Ensemble", "Band", "Players", "Quartet", "Collective", "Trio",
             "Society", "Orchestra", "Singers")  # fmt: skip
_PLACE = ("Kerry", "Galway", "Leipzig", "Mantua", "Boston", "Skye", "Hessen", "Shaanxi",
          "Florence", "Cork", "Lorraine", "Antrim", "Orkney", "Dresden", "Padua",
          "Sligo")  # fmt: skip


def msd_id(prefix: str, text: str) -> str:
    """An 18-character id in the MSD's style (TR... tracks, SO... songs, AR... artists)."""
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return prefix + "".join(alphabet[b % 36] for b in digest)


@dataclass
class Artist:
    artist_id: str
    name: str
    collection: str
    region: str
    family: str
    instrument: str
    program: int
    centre_pitch: int
    tempo_factor: float
    velocity: int
    level: float


# --------------------------------------------------------------------------- the parse cache


def cache_root() -> Path:
    """COLDTUNE_CACHE, else ~/.cache/coldtune: shared by every world on this machine."""
    configured = os.environ.get("COLDTUNE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "coldtune"


def _parse_cached(ref: PieceRef, cache: str) -> Piece | str:
    """The piece, parsed once per machine; a string is the reason it is unusable."""
    import music21

    folder = Path(cache) / f"pieces-v{PARSER_VERSION}-music21-{music21.__version__}"
    path = folder / f"{hashlib.blake2b(ref.key.encode(), digest_size=10).hexdigest()}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as saved:
                meta = json.loads(str(saved["meta"]))
                if meta.get("unusable"):
                    return meta["unusable"]
                return Piece(ref=ref, notes=saved["notes"], **meta)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is parsed again
    try:
        piece = parse_piece(ref)
        meta = {k: getattr(piece, k) for k in ("title", "tune_type", "region", "meter", "mode",
                                               "tempo_bpm")}  # fmt: skip
        notes = piece.notes
        result: Piece | str = piece
    except PieceUnusable as error:
        meta, notes, result = {"unusable": str(error)}, np.zeros((0, 3)), str(error)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, notes=notes, meta=np.array(json.dumps(meta)))
    return result


def _init_worker() -> None:
    import warnings

    warnings.filterwarnings("ignore")  # music21 warns per odd ABC field; reasons are kept


def _render_task(jobs: list[ClipJob], seconds: float, sr: int) -> int:
    render_clips(jobs, seconds=seconds, sr=sr)
    return len(jobs)


Progress = Callable[[str, int, int], None]  # (step, done, total)


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
    )


def _run(pool, calls, step: str, on_progress: Progress | None, sizes=None) -> list:
    """Run (function, args) calls in the pool; results in call order. Progress counts
    `sizes[i]` items (songs) for call i, one each by default."""
    sizes = sizes or [1] * len(calls)
    futures = {pool.submit(fn, *args): i for i, (fn, args) in enumerate(calls)}
    results: list = [None] * len(calls)
    pending, done_count = set(futures), 0
    while pending:
        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        for future in done:
            results[futures[future]] = future.result()
            done_count += sizes[futures[future]]
        if on_progress is not None:
            on_progress(step, done_count, sum(sizes))
    return results


# --------------------------------------------------------------------------- the build


def _quotas(n_songs: int, available: dict[str, int]) -> dict[str, int]:
    """Songs per collection: shares of n_songs, capped by what each holds, the rest
    spread over the others; every collection gets at least one song."""
    quotas = {name: 0 for name in COLLECTION_SHARES}
    remaining = n_songs
    open_ = dict(COLLECTION_SHARES)
    while remaining > 0 and open_:
        total = sum(open_.values())
        given = 0
        for name, share in sorted(open_.items()):
            room = available[name] - quotas[name]
            add = min(room, max(1, int(round(remaining * share / total))))
            add = min(add, remaining - given)
            quotas[name] += add
            given += add
        remaining -= given
        open_ = {n: s for n, s in open_.items() if quotas[n] < available[n]}
        if given == 0:
            break
    if remaining > 0:
        raise ParameterError(f"the corpus holds fewer usable pieces than {n_songs} songs")
    return quotas


def _choose_pieces(config: WorldConfig, pool, cache: str, on_progress) -> tuple[list[Piece], list]:
    rng = np.random.default_rng([config.seed, 1])
    candidates = {name: list_pieces(name) for name in COLLECTION_SHARES}
    order = {
        name: [refs[i] for i in rng.permutation(len(refs))] for name, refs in candidates.items()
    }
    quotas = _quotas(config.songs, {name: len(refs) for name, refs in candidates.items()})
    chosen: dict[str, list[Piece]] = defaultdict(list)
    spare: dict[str, list[Piece]] = defaultdict(list)  # usable, beyond the quota
    unusable: list[tuple[PieceRef, str]] = []
    cursor = dict.fromkeys(quotas, 0)
    while True:
        # ask for what is still missing (plus a margin for pieces that turn out unusable)
        calls = []
        for name, quota in quotas.items():
            missing = quota - len(chosen[name])
            if missing <= 0:
                continue
            take = order[name][cursor[name] : cursor[name] + missing + max(1, missing // 20)]
            cursor[name] += len(take)
            calls.extend((_parse_cached, (ref, cache)) for ref in take)
        if not calls:
            break
        results = _run(pool, calls, "parse", on_progress)
        for (_, (ref, _cache)), result in zip(calls, results, strict=True):
            if isinstance(result, str):
                unusable.append((ref, result))
            elif len(chosen[ref.collection]) < quotas[ref.collection]:
                chosen[ref.collection].append(result)
            else:
                spare[ref.collection].append(result)
        short = {n for n in quotas if len(chosen[n]) < quotas[n] and cursor[n] >= len(order[n])}
        if short:  # fewer usable pieces than its share (a paper-size world): others take it
            for name in short:
                quotas[name] = len(chosen[name])
            room = {
                n: 0 if n in short else len(order[n]) - cursor[n] + len(spare[n]) for n in quotas
            }
            extra = _quotas(config.songs - sum(quotas.values()), room)
            for name in quotas:
                quotas[name] += extra[name]
                while len(chosen[name]) < quotas[name] and spare[name]:
                    chosen[name].append(spare[name].pop(0))
    # keep the seeded order within each collection, whatever order the workers finished
    rank = {ref.key: i for refs in order.values() for i, ref in enumerate(refs)}
    pieces = [p for name in quotas for p in sorted(chosen[name], key=lambda p: rank[p.ref.key])]
    return pieces, unusable


def _make_artists(pieces: list[Piece], rng: np.random.Generator) -> tuple[list[Artist], np.ndarray]:
    """Songs of one (collection, region) go to artists of power-law sizes; each artist
    has one instrument, a tempo factor and a touch, so its songs sound alike."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, piece in enumerate(pieces):
        groups[(piece.ref.collection, piece.region)].append(i)
    artists: list[Artist] = []
    artist_of = np.empty(len(pieces), dtype=np.int64)
    used_names: set[str] = set()
    for (collection, region), members in sorted(groups.items()):
        members = [members[i] for i in rng.permutation(len(members))]
        weights = FAMILY_WEIGHTS[COLLECTION_FAMILIES[collection]]
        families = sorted(weights)
        p = np.array([weights[f] for f in families])
        lo = 0
        while lo < len(members):
            size = int(min(1 + rng.geometric(0.12), 40))
            family = families[rng.choice(len(families), p=p / p.sum())]
            program, instrument, centre = INSTRUMENTS[family][
                rng.integers(len(INSTRUMENTS[family]))
            ]
            name = _artist_name(rng, region, used_names)
            artist = Artist(
                artist_id=msd_id("AR", f"{collection}/{region}/{name}"),
                name=name, collection=collection, region=region, family=family,
                instrument=instrument, program=int(program), centre_pitch=int(centre),
                tempo_factor=float(np.exp(rng.normal(0.0, 0.08))),
                velocity=int(rng.integers(64, 100)), level=float(rng.uniform(0.5, 0.9)),
            )  # fmt: skip
            for song in members[lo : lo + size]:
                artist_of[song] = len(artists)
            artists.append(artist)
            lo += size
    return artists, artist_of


def _artist_name(rng: np.random.Generator, region: str, used: set[str]) -> str:
    for _ in range(1000):
        if rng.random() < 0.5:
            name = f"{_FIRST[rng.integers(len(_FIRST))]} {_LAST[rng.integers(len(_LAST))]}"
        else:
            name = (
                f"The {_PLACE[rng.integers(len(_PLACE))]} {_ENSEMBLE[rng.integers(len(_ENSEMBLE))]}"
            )
        if name not in used:
            used.add(name)
            return name
    name = f"Artist {len(used) + 1}"
    used.add(name)
    return name


def _rendering(piece: Piece, artist: Artist) -> tuple[Rendering, float]:
    base = piece.tempo_bpm or TEMPO.get(piece.tune_type, DEFAULT_TEMPO)
    bpm = float(np.clip(base * artist.tempo_factor, 40, 260))
    median = float(np.median(piece.notes[:, 2]))
    transpose = int(np.clip(12 * round((artist.centre_pitch - median) / 12), -24, 24))
    rendering = Rendering(artist.program, bpm, transpose, artist.velocity, artist.level)
    beat = 1.5 if piece.meter in ("6/8", "9/8", "12/8") else 1.0
    return rendering, beat


def _terciles(values: np.ndarray, names: tuple[str, str, str]) -> np.ndarray:
    """Each value's third of the world (tempo: note onsets per second; register: pitch)."""
    low, high = np.quantile(values, [1 / 3, 2 / 3])
    return np.where(values < low, names[0], np.where(values < high, names[1], names[2]))


def _shard_path(folder: str, track_id: str, suffix: str) -> str:
    # the MSD's layout: the 3rd, 4th and 5th characters of the track id as folders
    return f"{folder}/{track_id[2]}/{track_id[3]}/{track_id[4]}/{track_id}{suffix}"


@dataclass
class SongPlan:
    """Every song of a world but its audio: piece, artist, ids, how it is rendered, and
    the attributes listeners' taste is made of (one string per song each)."""

    pieces: list[Piece]
    unusable: list[tuple[PieceRef, str]]
    artists: list[Artist]
    artist_of: np.ndarray  # [shape=(n_songs,)] index into artists
    track_ids: list[str]
    song_ids: list[str]
    renderings: list[tuple[Rendering, float]]  # (rendering, beat length in quarter notes)
    attributes: dict[str, np.ndarray]  # name -> [shape=(n_songs,)] str


def _plan_songs(config: WorldConfig, pool, cache: str, on_progress) -> SongPlan:
    """Choose and parse the pieces, deal them to artists, plan each clip: no audio yet."""
    rng = np.random.default_rng([config.seed, 2])
    pieces, unusable = _choose_pieces(config, pool, cache, on_progress)
    artists, artist_of = _make_artists(pieces, rng)
    track_ids, song_ids, renderings = [], [], []
    for i, piece in enumerate(pieces):
        artist = artists[artist_of[i]]
        identity = f"{config.seed}/{piece.ref.key}/{artist.artist_id}"
        track_ids.append(msd_id("TR", f"track/{identity}"))
        song_ids.append(msd_id("SO", f"song/{identity}"))
        renderings.append(_rendering(piece, artist))
    attributes = _song_attributes(pieces, artists, artist_of, renderings)
    return SongPlan(
        pieces, unusable, artists, artist_of, track_ids, song_ids, renderings, attributes
    )


def _song_attributes(pieces, artists, artist_of, renderings) -> dict[str, np.ndarray]:
    """What a song is made of, as listeners hear it: one string per song each."""
    bpm = np.array([rendering.bpm for rendering, _ in renderings])
    notes_per_second = np.array(
        [
            len(np.unique(p.notes[:, 0])) / (p.quarter_notes * 60.0 / b)
            for p, b in zip(pieces, bpm, strict=True)
        ]
    )
    # the clip's median pitch: the piece's, moved by the artist's transposition
    pitch = np.array(
        [
            float(np.median(p.notes[:, 2])) + rendering.transpose
            for p, (rendering, _) in zip(pieces, renderings, strict=True)
        ]
    )
    return {
        "style": np.array([COLLECTIONS[p.ref.collection].style for p in pieces]),
        "family": np.array([artists[a].family for a in artist_of]),
        "tune_type": np.array([p.tune_type for p in pieces]),
        "meter_class": np.array([meter_class(p.meter) for p in pieces]),
        "tempo_class": _terciles(notes_per_second, ("slow", "medium", "fast")),
        "mode": np.array([p.mode for p in pieces]),
        "register": _terciles(pitch, ("low", "middle", "high")),
    }


def meter_class(meter: str) -> str:
    """How a meter is felt: duple (2/4, 4/4, 2/2, ...), triple (3/4, 3/8, ...), compound
    duple (6/8, 12/8, ...), compound triple (9/8), else irregular (7/8, ...) or free."""
    found = re.search(r"(\d+)/\d+", meter)  # "6/8"; Essen's "FREI4/4" is a free 4/4
    if found is None:
        return "free"
    beats = int(found.group(1))
    if beats in (2, 4, 8):
        return "duple"
    if beats == 3:
        return "triple"
    if beats in (6, 12):
        return "compound duple"
    if beats == 9:
        return "compound triple"
    return "irregular"


def listener_codes(plan: SongPlan, config: ListenerConfig) -> dict[str, np.ndarray]:
    """What simulate_listeners takes: integer codes of each taste attribute, and artist."""
    codes = {
        name: np.unique(plan.attributes[name], return_inverse=True)[1]
        for name in config.taste_shares
    }
    codes["artist"] = plan.artist_of
    return codes


@dataclass
class WorldSummary:
    out: str
    songs: int
    users: int
    triplets: int
    plays: int
    artists: int
    unusable_pieces: int
    seconds: float
    cached: bool

    def summary(self) -> str:
        return (
            (f"{self.out}: already built with these settings\n" if self.cached else "")
            + f"{self.songs:,} songs by {self.artists:,} artists, {self.users:,} users, "
            f"{self.triplets:,} triplets ({self.plays:,} plays); {self.unusable_pieces:,} "
            f"corpus pieces unusable (see unusable_pieces.tsv); {self.seconds:.0f} s -> {self.out}"
        )


def build_world(
    out: str | os.PathLike,
    config: WorldConfig = WorldConfig(),
    *,
    workers: int | None = None,
    on_progress: Progress | None = None,
) -> WorldSummary:
    """Build (or find already built) the world of `config` in folder `out`."""
    out = Path(out)
    start = time.perf_counter()
    marker = out / "world.json"
    builder = _builder()
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("builder") != builder:
            raise ParameterError(
                f"{out} holds a world made by another version of the builder "
                f"({saved.get('builder')}, this is {builder}); delete it to rebuild"
            )
        if saved.get("config") == json.loads(json.dumps(config.to_dict())):
            return WorldSummary(**{**saved["summary"], "cached": True, "seconds": 0.0})
        raise ParameterError(
            f"{out} holds a world built with other settings ({saved.get('config')}); "
            "build into another folder or delete this one"
        )
    workers = workers or os.cpu_count() or 1
    cache = str(cache_root())
    with _pool(workers) as pool:
        plan = _plan_songs(config, pool, cache, on_progress)
        jobs = []
        for i, piece in enumerate(plan.pieces):
            path = out / _shard_path("clips", plan.track_ids[i], ".ogg")
            if not path.exists():  # written atomically: present means complete
                rendering, beat = plan.renderings[i]
                jobs.append(ClipJob(piece.notes, rendering, str(path), beat))
        calls = [
            (_render_task, (jobs[lo : lo + BATCH], config.seconds, config.sr))
            for lo in range(0, len(jobs), BATCH)
        ]
        _run(pool, calls, "render", on_progress, sizes=[len(args[0]) for _, args in calls])
    pieces, artists, artist_of = plan.pieces, plan.artists, plan.artist_of
    track_ids, song_ids, unusable = plan.track_ids, plan.song_ids, plan.unusable
    listeners = simulate_listeners(
        listener_codes(plan, config.listeners),
        config.listeners,
        np.random.default_rng([config.seed, 3]),
    )

    # ---- files
    out.mkdir(parents=True, exist_ok=True)
    user_ids = [msd_id("", f"{config.seed}/user/{u}").lower()[:40] for u in range(config.users)]
    _write_triplets(out / "train_triplets.txt", listeners.plays, user_ids, song_ids)
    tracks = _tracks_table(plan)
    with atomic_path(out / "tracks.csv") as tmp:
        pacsv.write_csv(pa.table(tracks), tmp)
    with atomic_path(out / "unique_tracks.txt") as tmp:
        tmp.write_text(
            "".join(
                f"{t}<SEP>{s}<SEP>{a}<SEP>{n}\n"
                for t, s, a, n in zip(
                    track_ids, song_ids, tracks["artist"], tracks["title"], strict=True
                )
            )
        )
    with atomic_path(out / "clips.csv") as tmp:
        tmp.write_text(
            "song_id,path\n"
            + "".join(
                f"{s},{_shard_path('clips', t, '.ogg')}\n"
                for s, t in zip(song_ids, track_ids, strict=True)
            )
        )
    _write_tags(out, plan, tracks, config.seed)
    _write_hidden(
        out / "hidden", listeners, song_ids, artists, artist_of, config.listeners.taste_shares
    )
    with atomic_path(out / "unusable_pieces.tsv") as tmp:
        tmp.write_text(
            "collection\tpiece\treason\n"
            + "".join(f"{r.collection}\t{r.key}\t{' '.join(why.split())}\n" for r, why in unusable)
        )
    plays = listeners.plays
    summary = WorldSummary(
        out=str(out), songs=len(pieces), users=config.users, triplets=int(plays.nnz),
        plays=int(plays.sum()), artists=len(artists), unusable_pieces=len(unusable),
        seconds=round(time.perf_counter() - start, 1), cached=False,
    )  # fmt: skip
    write_json(
        marker,
        {
            "builder": builder,
            "config": config.to_dict(),
            "summary": asdict(summary),
            "collections": dict(Counter(p.ref.collection for p in pieces)),
            "unusable_by_collection": dict(Counter(r.collection for r, _ in unusable)),
        },
    )
    return summary


def _builder() -> dict:
    import music21

    return {
        "world_version": WORLD_VERSION,
        "parser_version": PARSER_VERSION,
        "music21": music21.__version__,
    }


def _tracks_table(plan: SongPlan) -> dict[str, list]:
    """The columns of tracks.csv: ids, metadata, how each song is played and heard."""
    pieces, artists, artist_of = plan.pieces, plan.artists, plan.artist_of
    return {
        "song_id": plan.song_ids,
        "track_id": plan.track_ids,
        "artist_id": [artists[a].artist_id for a in artist_of],
        "artist": [artists[a].name for a in artist_of],
        "title": [_title(p.title) for p in pieces],
        "collection": [COLLECTION_NAMES[p.ref.collection] for p in pieces],
        "style": list(plan.attributes["style"]),
        "region": [p.region for p in pieces],
        "tune_type": [p.tune_type for p in pieces],
        "meter": [p.meter for p in pieces],
        "meter_class": list(plan.attributes["meter_class"]),
        "mode": [p.mode for p in pieces],
        "instrument": [artists[a].instrument for a in artist_of],
        "family": list(plan.attributes["family"]),
        "program": [artists[a].program for a in artist_of],
        "bpm": [round(float(rendering.bpm), 1) for rendering, _ in plan.renderings],
        "tempo_class": list(plan.attributes["tempo_class"]),
        "register": list(plan.attributes["register"]),
        "source": [f"music21 corpus: {p.ref.key}" for p in pieces],
    }


def _title(title: str) -> str:
    return title.title() if title.isupper() else title


def _write_triplets(path: Path, plays, user_ids, song_ids) -> None:
    coo = plays.tocoo()
    order = np.lexsort((coo.col, coo.row))
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        for r, c, v in zip(coo.row[order], coo.col[order], coo.data[order], strict=True):
            handle.write(f"{user_ids[r]}\t{song_ids[c]}\t{int(v)}\n")


TAG_COVERAGE = (2.0, 1.0)
"""Beta(a, b) of a song's editorial coverage: the chance that each of its tags was
written down (mean 2/3). It stands for how thoroughly a label or an editor described
the song, and is drawn from nothing else: not from its plays, nor its popularity."""


def draw_tags(plan: SongPlan, tracks: dict, seed: int) -> list[list[list]]:
    """Each song's tags, [[tag, weight 0-100], ...] by weight, from its real metadata.

    Like Last.fm's they are sparse (under 2% of songs have none), but which tags a song
    carries depends on its coverage (TAG_COVERAGE) alone, never on its listeners: a
    metadata model reading the tags of cold songs learns nothing of their plays.
    """
    pieces, artists, artist_of = plan.pieces, plan.artists, plan.artist_of
    rng = np.random.default_rng([seed, 4])
    coverage = rng.beta(*TAG_COVERAGE, len(pieces))
    songs = []
    for i, piece in enumerate(pieces):
        artist = artists[artist_of[i]]
        candidates = [
            (tracks["style"][i], 100),
            (piece.tune_type, int(rng.integers(60, 101))),
            (piece.region, int(rng.integers(30, 81))),
            (artist.instrument, int(rng.integers(20, 61))),
            (artist.family, int(rng.integers(10, 41))),
            (str(plan.attributes["tempo_class"][i]), int(rng.integers(10, 41))),
            (piece.mode, int(rng.integers(10, 31))),
            (piece.meter, int(rng.integers(5, 21))),
            (tracks["collection"][i].lower(), int(rng.integers(20, 51))),
        ]
        keep = rng.random(len(candidates)) < coverage[i]
        tags = [[tag, weight] for (tag, weight), k in zip(candidates, keep, strict=True) if k]
        songs.append(sorted(tags, key=lambda t: -t[1]))
    return songs


def _write_tags(out: Path, plan: SongPlan, tracks: dict, seed: int) -> None:
    """Tags in the Last.fm dataset's layout: one JSON file per track (draw_tags)."""
    track_ids = plan.track_ids
    for i, tags in enumerate(draw_tags(plan, tracks, seed)):
        record = {
            "artist": plan.artists[plan.artist_of[i]].name,
            "timestamp": "2011-08-15 09:00:00.000000",
            "similars": [],
            "tags": tags,
            "track_id": track_ids[i],
            "title": tracks["title"][i],
        }
        path = out / _shard_path("lastfm", track_ids[i], ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(record))


def _write_hidden(folder: Path, listeners, song_ids, artists, artist_of, taste_shares) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.txt").write_text(
        "The simulation's hidden variables, for diagnostics only. No model, no training\n"
        "step and no evaluation of coldtune reads this folder.\n"
    )
    with atomic_path(folder / "users.npz") as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **listeners.hidden_users)
    columns = {"song_id": song_ids, "artist_index": artist_of, **listeners.hidden_songs}
    with atomic_path(folder / "songs.csv") as tmp:
        pacsv.write_csv(pa.table(columns), tmp)
    with atomic_path(folder / "artists.json") as tmp:
        tmp.write_text(json.dumps([asdict(a) for a in artists], indent=1))
    write_json(folder / "attributes.json", {"taste_shares": taste_shares})
