"""`coldtune audio merge`: one feature store from the parts extracted on many machines.

`coldtune audio extract --shard i/n` lets n machines extract disjoint parts of one
catalogue (parts by CRC-32 of the song id). They either write into one store on shared
storage, or each into a store of its own (a local disk, copied somewhere later). Both
ways end with a merge:

    coldtune audio merge --workspace W                  # the parts all wrote into W
    coldtune audio merge --workspace W M1 M2 M3 ...     # bring the stores of M1.. into W

A merge
- imports every committed shard of each source (hard links where source and target share
  a filesystem, copies elsewhere), the arrays first and the index last, each under a
  temporary name renamed into place: the shard commit protocol of `extract`, so a merge
  killed at any moment leaves a readable store, and running it again finishes it;
- is idempotent: a shard already in the target (same name, same index) is left alone;
- checks before it writes anything: equal extraction settings, no broken shard in a
  source, no song in two shards (two machines ran the same part), and that every part
  i of n has finished (its run left `parts/partIofN.json`);
- writes the store-wide `rejects.tsv` (decoding rejects from the shard indexes, listing
  rejects from every part's record) and `summary.json` with each part's figures.

Shards are immutable once committed, which is what makes hard links safe: nothing ever
writes into a committed shard, `extract` only deletes broken ones.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from coldtune.audio.store import (
    FEATURE_KINDS,
    INDEX_SCHEMA,
    ExtractConfig,
    _broken_shards,
    _committed,
    _read_indexes,
    read_part_records,
    write_rejects,
)
from coldtune.errors import ParameterError, WorkspaceError
from coldtune.workspace import atomic_path, read_json, write_json

_PART_NAME = re.compile(r"part(\d+)of(\d+)")


@dataclass
class MergeSummary:
    """What one merge did, and the merged store's totals."""

    sources: list[str]
    shards_imported: int
    shards_already_there: int
    songs_imported: int
    linked: bool  # hard links (True) or copies (False) for the imported arrays
    parts: list[str]  # "1/2", "2/2": the parts whose runs finished
    shards: int
    songs_in_store: int
    rejected_total: int
    rejects_path: str

    def summary(self) -> str:
        how = "linked" if self.linked else "copied"
        return (
            f"{self.shards_imported:,} shards ({self.songs_imported:,} songs) {how} from "
            f"{len(self.sources)} stores, {self.shards_already_there:,} already there; parts "
            f"{', '.join(self.parts)}; {self.songs_in_store:,} songs in the store, "
            f"{self.rejected_total:,} files rejected (see {self.rejects_path})"
        )


def features_dir_of(path: str | os.PathLike) -> Path:
    """A workspace's `features/` folder, or the path itself when it is a store already."""
    path = Path(path)
    if (path / "features" / "config.json").exists():
        return path / "features"
    if (path / "config.json").exists() and (path / "shards").is_dir():
        return path
    raise WorkspaceError(
        f"{path}: no feature store here (neither {path}/features/config.json nor "
        f"{path}/config.json); give a workspace that `coldtune audio extract` wrote into"
    )


def merge_stores(
    features_dir: str | os.PathLike,
    sources: Sequence[str | os.PathLike] = (),
    *,
    allow_missing_parts: bool = False,
) -> MergeSummary:
    """Merge the stores `sources` (workspaces or features folders) into `features_dir`,
    then check the whole store and write its rejects.tsv and summary.json.

    With no sources, only the check and the store-wide files: the way to finish when
    every machine extracted into the same store on shared storage.
    """
    target = Path(features_dir)
    stores = [features_dir_of(source) for source in sources]
    stores = [s for s in stores if s.resolve() != target.resolve()]  # W given as a source
    if len({s.resolve() for s in stores}) != len(stores):
        raise ParameterError("a source is given twice; give each store once")
    if not stores and not (target / "config.json").exists():
        raise WorkspaceError(
            f"{target}: no feature store to merge; give the stores to merge into it, "
            "or run `coldtune audio extract --shard i/n` into it first"
        )

    # 1. every check before any write
    config = _common_config(target, stores)
    for store in [*stores, target]:
        broken = _broken_shards(store / "shards") if (store / "shards").is_dir() else []
        if broken:
            raise WorkspaceError(
                f"{store}: shard {broken[0]} lists songs its arrays do not hold "
                f"({len(broken)} such shards); run `coldtune audio extract` there again first"
            )
    present = {path.stem: path for path in _committed(target / "shards")}
    to_import: list[tuple[Path, str]] = []  # (source shards folder, shard name)
    already = 0
    for store in stores:
        for path in _committed(store / "shards"):
            if path.stem in present:
                if not _same_shard(path, present[path.stem]):
                    raise WorkspaceError(
                        f"shard {path.stem} differs between {store} and {target}; shard names "
                        "are unique per run, so one of the two stores was altered by hand"
                    )
                if path.parent != present[path.stem].parent:
                    already += 1
                continue
            present[path.stem] = path
            to_import.append((store / "shards", path.stem))
    _check_no_song_twice(present)
    records = _merged_records(target, stores)
    parts = _check_parts(set(present), records, allow_missing_parts)

    # 2. the writes: config, shards (arrays, then the index that commits them), records
    target.mkdir(parents=True, exist_ok=True)
    if not (target / "config.json").exists():
        write_json(target / "config.json", config.to_dict())
    linked = True
    songs_imported = 0
    for folder, name in to_import:
        for kind in FEATURE_KINDS:
            linked &= _import_file(folder / f"{name}.{kind}.npy", target / "shards")
        linked &= _import_file(folder / f"{name}.parquet", target / "shards")
        songs_imported += pq.read_metadata(folder / f"{name}.parquet").num_rows
    for name, record in records.items():
        path = target / "parts" / f"{name}.json"
        if not path.exists() or read_json(path, what="part record", hint="") != record:
            write_json(path, record)

    # 3. the store-wide files
    index = _read_indexes(target / "shards")
    rejects = write_rejects(target, index)
    summary = MergeSummary(
        sources=[str(s) for s in stores],
        shards_imported=len(to_import),
        shards_already_there=already,
        songs_imported=songs_imported,
        linked=linked and bool(to_import),
        parts=parts,
        shards=len(present),
        songs_in_store=int(pc.sum(pc.is_null(index["reason"])).as_py() or 0),
        rejected_total=len(rejects),
        rejects_path=str(target / "rejects.tsv"),
    )
    write_json(
        target / "summary.json",
        {"merge": dataclasses.asdict(summary), "parts": read_part_records(target)},
    )
    return summary


def _common_config(target: Path, stores: list[Path]) -> ExtractConfig:
    configs = [
        (
            store,
            ExtractConfig.from_dict(read_json(store / "config.json", what="store config", hint="")),
        )
        for store in ([target] if (target / "config.json").exists() else []) + stores
    ]
    first_store, first = configs[0]
    for store, config in configs[1:]:
        if config != first:
            raise WorkspaceError(
                f"{store} was extracted with {config.to_dict()}, {first_store} with "
                f"{first.to_dict()}; a store holds one setting: extract again with the same "
                "options, or merge into another workspace"
            )
    return first


def _same_shard(a: Path, b: Path) -> bool:
    if not pq.read_table(a, schema=INDEX_SCHEMA).equals(pq.read_table(b, schema=INDEX_SCHEMA)):
        return False
    return all(
        np.load(a.with_suffix(f".{kind}.npy"), mmap_mode="r").shape
        == np.load(b.with_suffix(f".{kind}.npy"), mmap_mode="r").shape
        for kind in FEATURE_KINDS
    )


def _check_no_song_twice(shards: dict[str, Path]) -> None:
    seen: dict[str, str] = {}
    twice = []
    for name, path in sorted(shards.items()):
        for song_id in pq.read_table(path, columns=["song_id"])["song_id"].to_pylist():
            if song_id in seen:
                twice.append((song_id, seen[song_id], name))
            else:
                seen[song_id] = name
    if twice:
        song_id, first, second = twice[0]
        raise WorkspaceError(
            f"{len(twice)} songs are in two shards, e.g. {song_id!r} in {first} and {second}: "
            "two machines extracted the same part (the --shard i/n of each machine must "
            "differ), or one store was extracted without --shard; merge stores of disjoint parts"
        )


def _merged_records(target: Path, stores: list[Path]) -> dict[str, dict]:
    """Part records of the target, replaced by those of the sources (a source's record is
    its part's latest run); a part recorded by two sources ran twice: an error."""
    records = read_part_records(target) if (target / "parts").is_dir() else {}
    owner: dict[str, Path] = {}
    for store in stores:
        for name, record in read_part_records(store).items():
            if name in owner and records[name] != record:
                raise WorkspaceError(
                    f"part {record['shard']} was extracted in both {owner[name]} and {store}; "
                    "give the merge one store per part"
                )
            owner[name] = store
            records[name] = record
    return records


def _check_parts(shards: set[str], records: dict[str, dict], allow_missing: bool) -> list[str]:
    """The parts whose runs finished, sorted; an error for a part with shards but no record
    (its run was killed) and, unless allowed, for a missing part i of n."""
    unfinished = sorted({name.split("-", 1)[0] for name in shards} - set(records))
    if unfinished:
        i, n = _PART_NAME.fullmatch(unfinished[0]).groups()
        raise WorkspaceError(
            f"part {i}/{n} has shards but its run did not finish (no parts/{unfinished[0]}.json); "
            f"run `coldtune audio extract ... --shard {i}/{n}` again where it ran (it redoes only "
            "the missing songs), then merge"
        )
    counts: dict[int, set[int]] = {}
    for name in records:
        i, n = map(int, _PART_NAME.fullmatch(name).groups())
        counts.setdefault(n, set()).add(i)
    missing = [f"{i}/{n}" for n, done in counts.items() for i in range(1, n + 1) if i not in done]
    if missing and not allow_missing:
        raise WorkspaceError(
            f"parts {', '.join(missing)} are missing: no store given holds their run; run "
            "`coldtune audio extract --shard i/n` for each and merge again, or merge with "
            "--allow-missing-parts to keep a partial store"
        )
    return [f"{i}/{n}" for n, done in sorted(counts.items()) for i in sorted(done)]


def _import_file(source: Path, folder: Path) -> bool:
    """Hard-link (else copy) `source` into `folder` under its own name, atomically;
    returns whether it was linked."""
    with atomic_path(folder / source.name) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
            return True
        except OSError:
            shutil.copyfile(source, tmp)
            return False
