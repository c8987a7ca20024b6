"""The feature store: a folder of clips becomes memory-mapped float16 features per song.

Layout, under `W/features/`:

    config.json                   ClipConfig + FeatureConfig the store was built with
    shards/NAME.mel.npy           log-mel frames of the shard's songs, one after another
                                  [shape=(total_frames, n_mels)], float16
    shards/NAME.mfcc.npy          MFCCs + deltas, the same frames [shape=(.., 3 n_mfcc)]
    shards/NAME.parquet           the shard's index: song_id, path, offset, frames, and
                                  `reason` for each clip it rejected (offset -1)
    parts/partIofN.json           what the last run of part i of n did, and the files it
                                  rejected before decoding (a song id given twice)
    rejects.tsv, summary.json     written at the end of every `extract` run (and by
                                  `coldtune audio merge`, coldtune/audio/merge.py)
    logs/                         what the audio decoders printed, one file per worker

Frames are stored frames-major so that a window of consecutive frames (the CNN's 3 s
input) is one contiguous slice of a memory map: reading it touches a few pages, not
the shard.

Crash safety: a worker writes a shard's arrays, then its index, each to a temporary
name renamed into place (atomic on POSIX). The index is the commit: a shard without
one is invisible to readers and is deleted by the next run, which then redoes exactly
the songs no committed index lists. Killing the run at any moment loses at most the
shards in flight.

Float16 keeps 11 significant bits: a log-mel value in dB (within 80 dB of its clip's
peak) is stored to within 0.03 dB, an MFCC to 1 part in 2,000. At 22,050 Hz and hop 512
a 30 s clip is 1,292 frames: 1292 x (128 + 39) x 2 bytes = 431 KB, so the paper's
384,546 clips take 166 GB (127 GB for log-mel alone).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import queue
import re
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from coldtune.audio.decode import ClipConfig, ClipRejected, decode_clip
from coldtune.audio.features import FeatureConfig, mel_and_mfcc
from coldtune.errors import ParameterError, WorkspaceError
from coldtune.workspace import atomic_path, fingerprint, read_json, write_json

FEATURE_KINDS: dict[str, Callable[[FeatureConfig], int]] = {
    "mel": lambda config: config.n_mels,
    "mfcc": lambda config: 3 * config.n_mfcc,
}
"""What the store keeps per frame, and how many values each has."""

INDEX_SCHEMA = pa.schema(
    [
        ("song_id", pa.string()),
        ("path", pa.string()),
        ("offset", pa.int64()),
        ("frames", pa.int32()),
        ("reason", pa.string()),
    ]
)


# --------------------------------------------------------------------------- finding clips


@dataclass
class ClipList:
    """The clips of a folder or manifest: (song id, path) pairs, and those that cannot be
    used before decoding (a song id given twice, a manifest path that does not exist, a
    track id the tracks table does not know)."""

    clips: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # id, path, reason
    mapped: set[str] = field(default_factory=set)  # paths named by a known track id
    # rows of `rejected`: files named by a track id the tracks table does not know, and
    # further tracks (or files) of a song whose clip is already kept
    unknown_tracks: list[tuple[str, str, str]] = field(default_factory=list)
    duplicate_tracks: list[tuple[str, str, str]] = field(default_factory=list)


MSD_TRACK_ID = re.compile(r"TR[A-Z0-9]{16}")
"""An MSD track id: TR and 16 capitals or digits (TRAAAAW128F429D538)."""


def song_id_from_path(path: str | os.PathLike) -> str:
    """The file name without its last extension: MSD 7digital clips are named by id."""
    return Path(path).stem


def find_clips(
    folder: str | os.PathLike | None,
    *,
    manifest: str | os.PathLike | None = None,
    tracks: Mapping[str, str] | None = None,
):
    """Every non-hidden file under `folder` (ids from file names), or the rows of a
    manifest (CSV or TSV with columns song_id and path; relative paths are taken from the
    manifest's folder). Files that are not audio are kept: decoding rejects them with a
    reason, so the rejects table shows everything the user pointed at.

    `tracks` (track id -> song id, the MSD's unique_tracks.txt as read by
    `coldtune.data.tags.read_track_songs`) maps the MSD's names to song ids: a file
    named by a track id it holds is listed under that track's song; a file named like
    a track id (`MSD_TRACK_ID`) that it does not hold is rejected; any other name (a
    song id, SO...) is a song id as without `tracks`. Of several files of one song (two
    tracks of a song, or a track and the song's own name) the one whose name sorts first
    is kept, so the choice does not depend on the folders; the others are rejected
    with the kept one in their reason. Files with the very same id: the first listed is
    kept.
    """
    found = ClipList()
    if manifest is not None:
        pairs = _read_manifest(Path(manifest))
    else:
        if folder is None:
            raise ParameterError("give a folder of clips or --manifest")
        root = Path(folder)
        if not root.is_dir():
            raise ParameterError(f"{root}: not a folder; give the folder that holds the clips")
        pairs = []
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    path = Path(directory) / name
                    pairs.append((song_id_from_path(path), str(path)))
    # (song id, path, the name it was listed by) of every usable file, in listing order
    named: list[tuple[str, str, str]] = []
    for name, path in pairs:
        song_id = name
        if tracks is not None:
            if name in tracks:
                song_id = tracks[name]
                found.mapped.add(path)
            elif MSD_TRACK_ID.fullmatch(name):
                row = (
                    name,
                    path,
                    f"{Path(path).name}: track {name} is not in the tracks table "
                    "(unique_tracks.txt), so it has no song id",
                )
                found.unknown_tracks.append(row)
                found.rejected.append(row)
                continue
        named.append((song_id, path, name))
    kept: dict[str, tuple[str, str, str]] = {}
    for entry in named:
        song_id, _, name = entry
        if song_id not in kept or name < kept[song_id][2]:
            kept[song_id] = entry
    for entry in named:
        song_id, path, name = entry
        first = kept[song_id]
        if entry is first:
            found.clips.append((song_id, path))
        elif name == first[2]:
            found.rejected.append((song_id, path, f"duplicate song id, also at {first[1]}"))
        else:
            row = (
                song_id,
                path,
                f"{name} is another track of song {song_id}; kept {first[2]} "
                f"at {first[1]} (the name that sorts first)",
            )
            found.duplicate_tracks.append(row)
            found.rejected.append(row)
    return found


def _read_manifest(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise ParameterError(f"{path}: manifest not found")
    delimiter = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types={"song_id": pa.string(), "path": pa.string()}
            ),
        )
    except pa.ArrowInvalid as error:
        raise ParameterError(f"{path}: cannot read the manifest: {error}") from None
    missing = {"song_id", "path"} - set(table.column_names)
    if missing:
        raise ParameterError(
            f"{path}: the manifest needs columns song_id and path; missing "
            f"{', '.join(sorted(missing))} (found {', '.join(table.column_names)})"
        )
    pairs = []
    for line, (song_id, clip) in enumerate(
        zip(table["song_id"].to_pylist(), table["path"].to_pylist(), strict=True), start=2
    ):
        if not song_id or not clip:
            raise ParameterError(f"{path}:{line}: empty song_id or path")
        clip_path = Path(clip)
        if not clip_path.is_absolute():
            clip_path = path.parent / clip_path
        pairs.append((song_id, str(clip_path)))
    return pairs


# --------------------------------------------------------------------------- shard spec


@dataclass(frozen=True)
class ShardSpec:
    """`--shard i/n`: this run extracts the songs whose id hashes to part i of n.

    The hash of the id (CRC-32), not the position in a listing, picks the part, so parts
    stay disjoint when files are added between runs or listed in another order.
    """

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> ShardSpec:
        if not text:
            return cls()
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
            raise ParameterError(f"--shard must be i/n with 1 <= i <= n, like 2/8; got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def owns(self, song_id: str) -> bool:
        return zlib.crc32(song_id.encode()) % self.count == self.index - 1

    @property
    def prefix(self) -> str:
        return f"part{self.index}of{self.count}-"


# --------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class ExtractConfig:
    clip: ClipConfig = ClipConfig()
    features: FeatureConfig = FeatureConfig()

    def validate(self) -> ExtractConfig:
        self.clip.validate()
        self.features.validate()
        if self.clip.sr != self.features.sr:
            raise ParameterError(
                f"the clip's sample rate ({self.clip.sr}) must equal the features' "
                f"({self.features.sr})"
            )
        return self

    def to_dict(self) -> dict:
        return {"clip": self.clip.to_dict(), "features": self.features.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> ExtractConfig:
        # stores extracted before coldtune named the rate `sr` (as librosa) say sample_rate
        clip, features = (
            {("sr" if k == "sample_rate" else k): v for k, v in data[part].items()}
            for part in ("clip", "features")
        )
        return cls(ClipConfig(**clip), FeatureConfig(**features))


@dataclass
class ExtractSummary:
    """What one `extract` run did, and the store's totals after it."""

    clips_found: int
    already_done: int
    extracted: int
    rejected_now: int  # by decoding, in this run
    rejected_total: int  # every reject of this part, listing problems included
    songs_in_store: int
    seconds: float
    workers: int
    shard: str
    rejects_path: str
    # with a tracks table (`tracks=`): files of this part named by a known track id, by
    # an unknown one, and further tracks of a song already kept (both kinds rejected)
    tracks_mapped: int | None = None
    unknown_tracks: int = 0
    duplicate_tracks: int = 0

    @property
    def clips_per_second(self) -> float:
        return self.extracted / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        text = (
            f"{self.clips_found:,} files in part {self.shard}: {self.already_done:,} already "
            f"done, {self.extracted:,} extracted, {self.rejected_now:,} rejected now in "
            f"{self.seconds:.1f} s ({self.clips_per_second:.1f} clips/s, {self.workers} "
            f"workers); {self.songs_in_store:,} songs in the store"
        )
        if self.tracks_mapped is not None:
            text += (
                f"\n{self.tracks_mapped:,} files named by track id, stored by song id; "
                f"{self.unknown_tracks:,} tracks not in the tracks table; "
                f"{self.duplicate_tracks:,} further tracks of a song already kept "
                "(one clip per song: the track id that sorts first)"
            )
        if self.rejected_total:
            text += f"\n{self.rejected_total:,} files rejected in all: see {self.rejects_path}"
        return text


@dataclass(frozen=True)
class _ShardTask:
    name: str
    clips: tuple[tuple[str, str], ...]
    config: ExtractConfig
    shards_dir: str


_progress_queue = None  # set in each worker by _init_worker


def _init_worker(progress_queue, log_dir: str) -> None:
    global _progress_queue
    import torch

    _progress_queue = progress_queue
    _die_with_parent()
    # one process per core: intra-op threads would only fight over the same cores
    torch.set_num_threads(1)
    # libsndfile's decoders print warnings (mpg123: "fuzzy seeking") straight to the C
    # stderr; in a batch of thousands they would bury the progress bar, so each worker
    # keeps them in its own log file.
    log_path = Path(log_dir) / f"decoder-{os.getpid()}.log"
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 2)
    os.close(log)


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the extracting process dies.

    Otherwise a worker orphaned by `kill -9` of the parent would finish its shard while
    a re-run, started at once, removes that shard's uncommitted arrays as a killed
    run's leftovers. Elsewhere such a shard is found broken by the next run and redone.
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def extract_clip(path: str, config: ExtractConfig) -> dict[str, np.ndarray]:
    """Decode one file and compute its features, frames-major float32: {"mel": ..., ...}."""
    y = decode_clip(path, config.clip)
    mel, coefficients = mel_and_mfcc(y=y, config=config.features)
    return {"mel": mel, "mfcc": coefficients}


def _save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def _extract_shard(task: _ShardTask) -> tuple[str, int, int]:
    """Extract a shard's clips and commit it; returns (name, extracted, rejected)."""
    arrays: dict[str, list[np.ndarray]] = {kind: [] for kind in FEATURE_KINDS}
    rows = {name: [] for name in INDEX_SCHEMA.names}
    offset = 0
    for song_id, path in task.clips:
        try:
            features = extract_clip(path, task.config)
            reason = None
        except ClipRejected as error:
            reason = str(error)
        except Exception as error:  # noqa: BLE001 - a batch must go on; the reason is kept
            reason = f"unexpected {type(error).__name__}: {error}"
        rows["song_id"].append(song_id)
        rows["path"].append(path)
        rows["reason"].append(reason)
        if reason is None:
            frames = features["mel"].shape[0]
            for kind in FEATURE_KINDS:
                arrays[kind].append(features[kind].astype(np.float16))
            rows["offset"].append(offset)
            rows["frames"].append(frames)
            offset += frames
        else:
            rows["offset"].append(-1)
            rows["frames"].append(0)
        if _progress_queue is not None:
            _progress_queue.put(1)
    shards = Path(task.shards_dir)
    for kind, width in FEATURE_KINDS.items():
        parts = arrays[kind]
        array = (
            np.concatenate(parts)
            if parts
            else np.zeros((0, width(task.config.features)), np.float16)
        )
        _save_array(shards / f"{task.name}.{kind}.npy", array)
    # the index last: its rename commits the shard
    with atomic_path(shards / f"{task.name}.parquet") as tmp:
        pq.write_table(pa.table(rows, schema=INDEX_SCHEMA), tmp)
    extracted = sum(r is None for r in rows["reason"])
    return task.name, extracted, len(task.clips) - extracted


def _committed(shards_dir: Path) -> list[Path]:
    return sorted(shards_dir.glob("*.parquet"))


def _read_indexes(shards_dir: Path) -> pa.Table:
    tables = []
    for path in _committed(shards_dir):
        table = pq.read_table(path, schema=INDEX_SCHEMA)
        tables.append(table.append_column("shard", pa.repeat(pa.scalar(path.stem), len(table))))
    if not tables:
        return INDEX_SCHEMA.empty_table().append_column("shard", pa.array([], pa.string()))
    return pa.concat_tables(tables)


def _broken_shards(shards_dir: Path) -> list[str]:
    """Committed shards whose arrays are missing or shorter than their index says."""
    broken = []
    for path in _committed(shards_dir):
        index = pq.read_table(path, columns=["offset", "frames"])
        needed = int(pc.max(pc.add(index["offset"], index["frames"])).as_py() or 0)
        for kind in FEATURE_KINDS:
            try:
                rows = np.load(shards_dir / f"{path.stem}.{kind}.npy", mmap_mode="r").shape[0]
            except (OSError, ValueError):
                rows = -1
            if rows < needed:
                broken.append(path.stem)
                break
    return broken


def _remove_uncommitted(shards_dir: Path, spec: ShardSpec) -> int:
    """Delete arrays of this part's shards that were never committed (a killed run), and
    shards whose arrays went missing, so that their songs are extracted again."""
    for name in _broken_shards(shards_dir):
        if name.startswith(spec.prefix):
            (shards_dir / f"{name}.parquet").unlink(missing_ok=True)
    committed = {path.stem for path in _committed(shards_dir)}
    removed = 0
    for path in shards_dir.glob(f"{spec.prefix}*.npy"):
        if path.name.split(".", 1)[0] not in committed:
            path.unlink(missing_ok=True)
            removed += 1
    for path in shards_dir.glob(f".{spec.prefix}*.part"):
        path.unlink(missing_ok=True)
    return removed


def _check_config(features_dir: Path, config: ExtractConfig) -> None:
    path = features_dir / "config.json"
    if path.exists():
        saved = ExtractConfig.from_dict(read_json(path, what="store config", hint=""))
        if saved != config:
            raise WorkspaceError(
                f"{features_dir}: this store was built with {saved.to_dict()}, not "
                f"{config.to_dict()}; extract into another workspace, or delete "
                f"{features_dir} to rebuild it"
            )
    else:
        write_json(path, config.to_dict())


def _part_record_path(features_dir: Path, shard: ShardSpec) -> Path:
    return features_dir / "parts" / f"{shard.prefix.rstrip('-')}.json"


def read_part_records(features_dir: str | os.PathLike) -> dict[str, dict]:
    """The record each finished `extract` run left for its part: {"part1of2": {...}}."""
    folder = Path(features_dir) / "parts"
    return {
        path.stem: read_json(path, what="part record", hint="")
        for path in sorted(folder.glob("part*of*.json"))
    }


def write_rejects(features_dir: str | os.PathLike, index: pa.Table) -> list[tuple[str, str, str]]:
    """Write `rejects.tsv`: every file rejected by decoding (in the shard indexes) or
    before it (in the part records), sorted by song id and path; returns the rows."""
    features_dir = Path(features_dir)
    rejects = {
        (song_id, path, reason)
        for song_id, path, reason in zip(
            index["song_id"].to_pylist(),
            index["path"].to_pylist(),
            index["reason"].to_pylist(),
            strict=True,
        )
        if reason is not None
    }
    for record in read_part_records(features_dir).values():
        rejects.update(tuple(row) for row in record.get("listing_rejects", []))
    rows = sorted(rejects, key=lambda r: (r[0], r[1]))
    with atomic_path(features_dir / "rejects.tsv") as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("song_id\tpath\treason\n")
            for row in rows:
                handle.write("\t".join(" ".join(str(v).split()) for v in row) + "\n")
    return rows


ProgressCallback = Callable[[int, int], None]  # (clips done in this run, clips to do)


def extract(
    folder: str | os.PathLike | None,
    features_dir: str | os.PathLike,
    *,
    config: ExtractConfig = ExtractConfig(),
    manifest: str | os.PathLike | None = None,
    tracks: Mapping[str, str] | None = None,
    workers: int | None = None,
    shard: ShardSpec = ShardSpec(),
    clips_per_shard: int = 64,
    on_progress: ProgressCallback | None = None,
    in_process: bool = False,
) -> ExtractSummary:
    """Extract every clip of `folder` (or `manifest`) not yet in the store at features_dir.

    Runs in `workers` processes (default: one per core), or in this process with
    `in_process` (a service adding one upload: no process to start), commits shards of
    `clips_per_shard` clips as they finish, and can be killed and re-run at any moment.
    `tracks` (track id -> song id, `coldtune.data.tags.read_track_songs` of the MSD's
    unique_tracks.txt) stores clips named by track id under their song ids
    (`find_clips` says how).
    """
    config = config.validate()
    if not (isinstance(clips_per_shard, int) and clips_per_shard >= 1):
        raise ParameterError(f"clips_per_shard must be a positive integer, got {clips_per_shard!r}")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    start = time.perf_counter()
    features_dir = Path(features_dir)
    shards_dir = features_dir / "shards"
    log_dir = features_dir / "logs"
    shards_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    _check_config(features_dir, config)
    _remove_uncommitted(shards_dir, shard)

    listing = find_clips(folder, manifest=manifest, tracks=tracks)
    mine = [(song_id, path) for song_id, path in listing.clips if shard.owns(song_id)]
    done = set(_read_indexes(shards_dir)["song_id"].to_pylist())
    todo = [(song_id, path) for song_id, path in mine if song_id not in done]
    tasks = [
        _ShardTask(
            f"{shard.prefix}{uuid.uuid4().hex[:12]}",
            tuple(todo[i : i + clips_per_shard]),
            config,
            str(shards_dir),
        )
        for i in range(0, len(todo), clips_per_shard)
    ]
    extracted = rejected = 0
    if tasks:
        if in_process:
            extracted = rejected = 0
            for task in tasks:
                _, ok, bad = _extract_shard(task)
                extracted, rejected = extracted + ok, rejected + bad
                if on_progress is not None:
                    on_progress(extracted + rejected, len(todo))
        else:
            extracted, rejected = _run_tasks(tasks, workers, str(log_dir), len(todo), on_progress)

    mine_rejected = [r for r in listing.rejected if shard.owns(r[0])]
    track_counts = {}
    if tracks is not None:
        track_counts = {
            "tracks_mapped": sum(path in listing.mapped for _, path in mine),
            "unknown_tracks": sum(shard.owns(r[0]) for r in listing.unknown_tracks),
            "duplicate_tracks": sum(shard.owns(r[0]) for r in listing.duplicate_tracks),
        }
    # What this part's run saw before decoding (listing problems: duplicate ids) is in
    # no shard index, so it is kept in the part's record; `coldtune audio merge` reads
    # the records of every part, wherever each ran.
    write_json(
        _part_record_path(features_dir, shard),
        {
            "shard": f"{shard.index}/{shard.count}",
            "clips_found": len(mine) + len(mine_rejected),
            "already_done": len(mine) - len(todo),
            "extracted": extracted,
            "rejected_now": rejected,
            "workers": workers,
            "seconds": round(time.perf_counter() - start, 3),
            **track_counts,
            "listing_rejects": [list(r) for r in mine_rejected],
        },
    )
    index = _read_indexes(shards_dir)
    rejects_path = features_dir / "rejects.tsv"
    all_rejects = write_rejects(features_dir, index)
    summary = ExtractSummary(
        clips_found=len(mine) + len(mine_rejected),
        already_done=len(mine) - len(todo),
        extracted=extracted,
        rejected_now=rejected,
        rejected_total=len(all_rejects),
        songs_in_store=int(pc.sum(pc.is_null(index["reason"])).as_py() or 0),
        seconds=time.perf_counter() - start,
        workers=workers,
        shard=f"{shard.index}/{shard.count}",
        rejects_path=str(rejects_path),
        **track_counts,
    )
    write_json(features_dir / "summary.json", dataclasses.asdict(summary))
    return summary


def _run_tasks(tasks, workers, log_dir, total, on_progress) -> tuple[int, int]:
    # "spawn": workers start clean instead of inheriting the parent's torch threads
    context = multiprocessing.get_context("spawn")
    progress = context.Queue()
    extracted = rejected = finished = 0
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(progress, log_dir),
    ) as pool:
        pending = {pool.submit(_extract_shard, task) for task in tasks}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                _, ok, bad = future.result()
                extracted += ok
                rejected += bad
            with contextlib.suppress(queue.Empty):
                while True:
                    finished += progress.get_nowait()
            if on_progress is not None:
                on_progress(finished, total)
    if on_progress is not None:
        on_progress(total, total)
    return extracted, rejected


# --------------------------------------------------------------------------- reading


class FeatureStore:
    """Read-only access to a feature store: any song's frames, or any window of them,
    through memory maps (nothing is read until a slice is asked for).

        store = FeatureStore(workspace.features_dir)
        window = store.window("TRAAAAW128F429D538", start=200, frames=130)  # (130, 128)
    """

    def __init__(self, features_dir: str | os.PathLike, *, max_open_shards: int = 256):
        broken = _broken_shards(Path(features_dir) / "shards")
        if broken:
            raise WorkspaceError(
                f"{features_dir}: shard {broken[0]} lists songs its arrays do not hold "
                f"({len(broken)} such shards); run `coldtune audio extract` again to redo them"
            )
        self.root = Path(features_dir)
        config_path = self.root / "config.json"
        self.config = ExtractConfig.from_dict(
            read_json(
                config_path,
                what="feature store",
                hint="run `coldtune audio extract DIR --workspace W` first",
            )
        )
        index = _read_indexes(self.root / "shards")
        keep = pc.is_null(index["reason"])
        index = index.filter(keep)
        self.song_ids = np.asarray(index["song_id"].to_pylist(), dtype=object)
        self._row = {song_id: row for row, song_id in enumerate(self.song_ids)}
        shards = index["shard"].to_pylist()
        self.shard_names = sorted(set(shards))
        shard_row = {name: i for i, name in enumerate(self.shard_names)}
        self.shard_of = np.fromiter((shard_row[s] for s in shards), np.int32, len(shards))
        self.offsets = index["offset"].to_numpy()
        self.frames = index["frames"].to_numpy()
        self._memmap = lru_cache(maxsize=max_open_shards)(self._open)

    def __len__(self) -> int:
        return len(self.song_ids)

    def fingerprint(self) -> str:
        """A content hash of the store's shard indexes: which songs it holds, where."""
        shards = self.root / "shards"
        return fingerprint([shards / f"{name}.parquet" for name in self.shard_names], root=shards)

    def __contains__(self, song_id: object) -> bool:
        return song_id in self._row

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r}, songs={len(self)})"

    def width(self, kind: str = "mel") -> int:
        return FEATURE_KINDS[self._kind(kind)](self.config.features)

    @staticmethod
    def _kind(kind: str) -> str:
        if kind not in FEATURE_KINDS:
            raise ParameterError(f"kind must be one of {', '.join(FEATURE_KINDS)}, got {kind!r}")
        return kind

    def _open(self, shard: int, kind: str) -> np.ndarray:
        """The shard's memory map as a plain read-only array: slicing an np.memmap runs
        its Python __array_finalize__ for every slice, a plain view of the same pages
        does not."""
        path = self.root / "shards" / f"{self.shard_names[shard]}.{kind}.npy"
        return np.load(path, mmap_mode="r").view(np.ndarray)

    def row(self, song_id: str) -> int:
        try:
            return self._row[song_id]
        except KeyError:
            raise WorkspaceError(
                f"song {song_id!r} is not in the feature store {self.root} "
                f"(never extracted, or rejected: see rejects.tsv)"
            ) from None

    def n_frames(self, song_id: str) -> int:
        return int(self.frames[self.row(song_id)])

    def song(self, song_id: str, kind: str = "mel") -> np.ndarray:
        """All frames of one song [shape=(frames, width)], float16: a read-only view of
        the memory-mapped shard (nothing is read until it is used)."""
        return self.window(song_id, start=0, frames=self.n_frames(song_id), kind=kind)

    def window(self, song_id: str, *, start: int, frames: int, kind: str = "mel") -> np.ndarray:
        """Frames start..start+frames of one song [shape=(frames, width)], float16: a
        read-only view of the memory-mapped shard, not a copy."""
        row = self.row(song_id)
        total = int(self.frames[row])
        if not (0 <= start and frames >= 1 and start + frames <= total):
            raise ParameterError(
                f"window {start}..{start + frames} is outside song {song_id!r}'s {total} frames"
            )
        memmap = self._memmap(int(self.shard_of[row]), self._kind(kind))
        first = int(self.offsets[row]) + start
        return np.asarray(memmap[first : first + frames])

    def random_windows(
        self, song_ids, *, frames: int, rng: np.random.Generator, kind: str = "mel"
    ) -> np.ndarray:
        """One window of `frames` frames at a uniformly random start in each song
        [shape=(len(song_ids), frames, width)], float16: the CNN's training input."""
        kind = self._kind(kind)
        rows = [self.row(song_id) for song_id in song_ids]
        totals = self.frames[rows]
        if rows and totals.min() < frames:
            short = int(np.argmax(totals < frames))
            raise ParameterError(
                f"song {song_ids[short]!r} has {totals[short]} frames, fewer than a window "
                f"of {frames}"
            )
        out = np.empty((len(rows), frames, self.width(kind)), np.float16)
        # one start per song, drawn in turn (the stream of draws a seed has always given)
        firsts, shards = self.offsets[rows].tolist(), self.shard_of[rows].tolist()
        for i, total in enumerate(totals.tolist()):
            first = firsts[i] + int(rng.integers(0, total - frames + 1))
            out[i] = self._memmap(shards[i], kind)[first : first + frames]
        return out

    def iter_songs(self, kind: str = "mel") -> Iterator[tuple[str, np.ndarray]]:
        """(song id, all its frames) for every song, shard by shard (sequential reads)."""
        order = np.lexsort((self.offsets, self.shard_of))
        for row in order:
            song_id = self.song_ids[row]
            yield song_id, self.song(song_id, kind)
