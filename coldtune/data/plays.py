"""Play counts in: Taste Profile triplets, CSV and Parquet -> `Interactions`.

Reading is streaming and multi-threaded (pyarrow's CSV and Parquet readers); ids are
dictionary-encoded per block and unified once at the end, so no Python object is made
per line. A first pass assumes the file is clean. Only when it meets a bad line does a
second, serial pass run, which knows every line's number and so can name file, line and
reason for each bad one; clean files (the common case) never pay for it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import scipy.sparse as sp

from coldtune.data.ids import IdMap
from coldtune.errors import ParameterError, PlaysFormatError, WorkspaceError
from coldtune.workspace import Workspace, atomic_path, read_json, write_json

ON_BAD_LINES = ("error", "skip")
_MAX_EXAMPLES = 20  # bad lines quoted in a report; the rest are counted
_MAX_COUNT = np.iinfo(np.int32).max
_DICT = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True)
class BadLine:
    """One rejected input line (or Parquet row), numbered from 1 as an editor does."""

    line: int
    reason: str
    malformed: bool = False  # True: the parser could not split it into the expected fields

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class IngestReport:
    """What an ingest read, summed and skipped. Nothing is dropped without a count here."""

    source: str
    format: str
    rows_read: int = 0
    plays: int = 0  # distinct (user, song) pairs with a positive count
    users: int = 0
    songs: int = 0
    total_count: int = 0
    duplicates_summed: int = 0
    zero_count_rows: int = 0  # rows whose count is 0: no play, so no entry in the matrix
    skipped_lines: int = 0
    skipped_examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"read {self.rows_read:,} rows from {self.source} ({self.format})",
            f"{self.users:,} users x {self.songs:,} songs, {self.plays:,} (user, song) pairs,"
            f" {self.total_count:,} plays in all",
        ]
        if self.duplicates_summed:
            lines.append(f"{self.duplicates_summed:,} repeated (user, song) rows summed")
        if self.zero_count_rows:
            lines.append(f"{self.zero_count_rows:,} rows with count 0 (no play) not stored")
        if self.skipped_lines:
            lines.append(f"skipped {self.skipped_lines:,} bad lines, for example:")
            lines.extend(f"  {example}" for example in self.skipped_examples[:5])
        return "\n".join(lines)


@dataclass
class Interactions:
    """Summed play counts with the mapping from outside ids to rows and columns.

    matrix : scipy.sparse.csr_matrix [shape=(n_users, n_songs), dtype=int32]
        Play counts; repeated (user, song) rows are summed, zeros are not stored.
    user_ids, song_ids : np.ndarray [dtype=object (str)]
        `user_ids[u]` is the id of row u, `song_ids[i]` the id of column i.
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    song_ids: np.ndarray
    report: IngestReport | None = None

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_songs(self) -> int:
        return self.matrix.shape[1]

    def songs(self) -> IdMap:
        """Song id <-> column (built on demand: one entry per song, not per play)."""
        return IdMap(self.song_ids)

    def users(self) -> IdMap:
        """User id <-> row."""
        return IdMap(self.user_ids)


# --------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class _Batch:
    user: pa.Array  # dictionary<int32, string> or string
    song: pa.Array
    count: pa.Array  # int64 (typed pass) or string (checked pass)
    lines: Callable[[np.ndarray], np.ndarray]  # row positions in this batch -> line numbers


class _CleanPassFailed(Exception):
    """The fast pass met something it cannot number; the checked pass takes over."""


@dataclass(frozen=True)
class _CsvLayout:
    delimiter: str
    column_names: list[str] | None  # None: the first line is a header
    user_col: str
    song_col: str
    count_col: str


def _csv_layout(path: Path, fmt: str, user_col: str, song_col: str, count_col: str) -> _CsvLayout:
    if fmt == "triplets":
        # Taste Profile `train_triplets.txt`: user<TAB>song<TAB>count, no header.
        return _CsvLayout("\t", ["user", "song", "count"], "user", "song", "count")
    delimiter = "\t" if path.suffix in (".tsv", ".tab") else ","
    return _CsvLayout(delimiter, None, user_col, song_col, count_col)


def _header(path: Path, layout: _CsvLayout) -> list[str]:
    # pyarrow reads the header as it will read the data (quotes, encodings).
    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=1 << 16),
            parse_options=pcsv.ParseOptions(
                delimiter=layout.delimiter, invalid_row_handler=lambda row: "skip"
            ),
        )
    except pa.ArrowInvalid as exc:
        raise PlaysFormatError(f"{path}: cannot read a header line: {exc}") from exc
    return reader.schema.names


def _check_columns(path: Path, available: list[str], wanted: dict[str, str]) -> None:
    for role, name in wanted.items():
        if name not in available:
            raise PlaysFormatError(
                f"{path}: no column {name!r} for the {role} "
                f"(the file has {', '.join(map(repr, available)) or 'no columns'}); "
                f"choose one with --{role}-col"
            )


def _csv_batches(
    path: Path, layout: _CsvLayout, *, checked: bool, block_size: int, bad: list[BadLine]
) -> Iterator[_Batch]:
    """Yield batches of a delimited file.

    checked=False: multi-threaded, count parsed as int64; a malformed row raises
    _CleanPassFailed (multi-threaded parsing does not know line numbers).
    checked=True: serial, count kept as text and validated by the caller; each
    malformed row is appended to `bad` with its physical line number.
    """
    header_lines = 0 if layout.column_names else 1
    invalid_lines: list[int] = []  # physical lines of malformed rows, in order

    def on_invalid(row: pcsv.InvalidRow) -> str:
        if not checked:
            return "error"  # surfaces as ArrowInvalid, turned into _CleanPassFailed below
        invalid_lines.append(row.number)
        bad.append(
            BadLine(
                row.number,
                f"expected {row.expected_columns} {_delimiter_name(layout.delimiter)}-separated "
                f"fields ({layout.user_col}, {layout.song_col}, {layout.count_col}), "
                f"got {row.actual_columns}: {row.text[:80]!r}",
                malformed=True,
            )
        )
        return "skip"

    count_type = pa.string() if checked else pa.int64()
    try:
        reader = _open_csv(path, layout, checked, block_size, on_invalid, count_type)
    except pa.ArrowInvalid as exc:
        if checked:
            raise PlaysFormatError(f"{path}: cannot be read as delimited text: {exc}") from exc
        raise _CleanPassFailed from exc
    rows_before = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            if checked:
                raise PlaysFormatError(f"{path}: cannot be read as delimited text: {exc}") from exc
            raise _CleanPassFailed from exc
        start = rows_before
        known_invalid = np.asarray(invalid_lines, dtype=np.int64)

        def lines(positions: np.ndarray, start: int = start, known: np.ndarray = known_invalid):
            # Row g (0-based among parsed rows) is physical line g + 1 + header + the
            # number of malformed lines before it. Malformed line j has
            # known[j] - header - 1 - j parsed rows before it.
            g = positions.astype(np.int64) + start
            before = known - header_lines - 1 - np.arange(len(known))
            return g + 1 + header_lines + np.searchsorted(before, g, side="right")

        rows_before += batch.num_rows
        yield _Batch(batch.column(0), batch.column(1), batch.column(2), lines)


def _open_csv(path, layout, checked, block_size, on_invalid, count_type) -> pcsv.CSVStreamingReader:
    return pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(
            column_names=layout.column_names, use_threads=not checked, block_size=block_size
        ),
        # Empty lines are kept as rows so that they are reported, not silently dropped,
        # and so that row positions map to line numbers.
        parse_options=pcsv.ParseOptions(
            delimiter=layout.delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False
        ),
        convert_options=pcsv.ConvertOptions(
            include_columns=[layout.user_col, layout.song_col, layout.count_col],
            column_types={
                layout.user_col: _DICT,
                layout.song_col: _DICT,
                layout.count_col: count_type,
            },
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _delimiter_name(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma"}.get(delimiter, repr(delimiter))


def _parquet_batches(
    path: Path, user_col: str, song_col: str, count_col: str, *, block_size: int
) -> Iterator[_Batch]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise PlaysFormatError(f"{path}: not a readable Parquet file ({exc})") from exc
    names = parquet.schema_arrow.names
    _check_columns(path, names, {"user": user_col, "song": song_col, "count": count_col})
    rows_before = 0
    batch_rows = max(1024, block_size // 32)
    for batch in parquet.iter_batches(
        batch_size=batch_rows, columns=[user_col, song_col, count_col]
    ):
        start = rows_before
        rows_before += batch.num_rows
        user, song, count = (batch.column(name) for name in (user_col, song_col, count_col))
        yield _Batch(
            _as_dictionary(user),
            _as_dictionary(song),
            _parquet_count(count),
            lambda positions, start=start: positions.astype(np.int64) + start + 1,
        )


def _as_dictionary(array: pa.Array) -> pa.Array:
    """Ids as dictionary<int32, string>, whatever type the Parquet column has."""
    if pa.types.is_dictionary(array.type):
        if pa.types.is_string(array.type.value_type) and array.type.index_type == pa.int32():
            return array
        array = array.cast(pa.string())
    elif not pa.types.is_string(array.type):
        array = array.cast(pa.string())  # integer ids become their decimal text
    return pc.dictionary_encode(array)


def _parquet_count(array: pa.Array) -> pa.Array:
    if pa.types.is_integer(array.type):
        return array.cast(pa.int64())
    if pa.types.is_floating(array.type):
        # Integral floats are play counts written by a tool that prefers floats; others are
        # rejected by the string check below with their value in the message.
        values = array.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            integral = np.isfinite(values) & (values == np.floor(values))
        if integral.all() and array.null_count == 0:
            return pa.array(values.astype(np.int64))
        return array.cast(pa.string())
    return array.cast(pa.string())


# --------------------------------------------------------------------------- validation


def _validate(batch: _Batch, on_bad: list[BadLine]) -> tuple[np.ndarray, np.ndarray]:
    """Return (keep mask, counts as int64) for one batch; append each bad row to `on_bad`."""
    n = len(batch.count)
    reasons = np.full(n, None, dtype=object)

    def flag(mask: np.ndarray, reason: str | Callable[[int], str]) -> None:
        fresh = mask & (reasons == None)  # noqa: E711 (element-wise comparison)
        for position in np.flatnonzero(fresh):
            reasons[position] = reason(position) if callable(reason) else reason

    empty_user, empty_song = _empty(batch.user), _empty(batch.song)
    count = batch.count
    if pa.types.is_integer(count.type):
        missing = np.asarray(count.is_null())
        values = np.where(missing, 0, count.fill_null(0).to_numpy()).astype(np.int64)
        flag(empty_user & empty_song & missing, "empty line")
        flag(empty_user, "empty user id")
        flag(empty_song, "empty song id")
        flag(missing, "missing count")
        flag(values < 0, lambda p: f"negative count {values[p]}")
    else:
        text = pc.utf8_trim_whitespace(count)
        missing = np.asarray(pc.equal(pc.utf8_length(text), 0).fill_null(True))
        digits = np.asarray(pc.match_substring_regex(text, r"^[0-9]+$").fill_null(False))
        negative = np.asarray(pc.match_substring_regex(text, r"^-[0-9]+$").fill_null(False))
        long = digits & (np.asarray(pc.utf8_length(text)) > 18)  # beyond int64: too large
        flag(empty_user & empty_song & missing, "empty line")
        flag(empty_user, "empty user id")
        flag(empty_song, "empty song id")
        flag(missing, "missing count")
        flag(negative, lambda p: f"negative count {text[p].as_py()}")
        flag(long, lambda p: f"count {text[p].as_py()[:40]} too large (at most {_MAX_COUNT})")
        ok = digits & ~long
        flag(~ok, lambda p: f"count {text[p].as_py()[:40]!r} is not a non-negative integer")
        values = np.zeros(n, dtype=np.int64)
        if ok.any():
            values[ok] = pc.cast(pc.filter(text, pa.array(ok)), pa.int64()).to_numpy()
    flag(values > _MAX_COUNT, lambda p: f"count {values[p]} too large (at most {_MAX_COUNT})")

    bad_positions = np.flatnonzero(reasons != None)  # noqa: E711
    if len(bad_positions):
        for line, reason in zip(batch.lines(bad_positions), reasons[bad_positions], strict=True):
            on_bad.append(BadLine(int(line), reason))
    keep = np.ones(n, dtype=bool)
    keep[bad_positions] = False
    return keep, values


def _empty(column: pa.Array) -> np.ndarray:
    if pa.types.is_dictionary(column.type):
        lengths = pc.binary_length(column.dictionary).to_numpy(zero_copy_only=False)
        indices = column.indices.to_numpy(zero_copy_only=False)
        return lengths[indices] == 0 if len(lengths) else np.zeros(len(column), dtype=bool)
    return np.asarray(pc.equal(pc.binary_length(column), 0).fill_null(True))


# --------------------------------------------------------------------------- assembly


class _Collector:
    """Accumulates the kept rows of every batch; ids stay dictionary-encoded."""

    def __init__(self) -> None:
        self.users: list[pa.Array] = []
        self.songs: list[pa.Array] = []
        self.counts: list[np.ndarray] = []
        self.rows_read = 0
        self.zero_count_rows = 0

    def add(self, batch: _Batch, keep: np.ndarray, counts: np.ndarray) -> None:
        self.rows_read += len(keep)
        positive = keep & (counts > 0)
        self.zero_count_rows += int((keep & (counts == 0)).sum())
        if not positive.all():
            mask = pa.array(positive)
            user, song = batch.user.filter(mask), batch.song.filter(mask)
        else:
            user, song = batch.user, batch.song
        self.users.append(user)
        self.songs.append(song)
        self.counts.append(counts[positive])

    def interactions(self, report: IngestReport) -> Interactions:
        user_rows, user_ids = _unify(self.users)
        song_rows, song_ids = _unify(self.songs)
        counts = np.concatenate(self.counts) if self.counts else np.zeros(0, np.int64)
        coo = sp.coo_matrix((counts, (user_rows, song_rows)), shape=(len(user_ids), len(song_ids)))
        matrix = coo.tocsr()  # sums repeated (user, song) pairs
        matrix.sum_duplicates()
        if matrix.nnz and matrix.data.max() > _MAX_COUNT:
            raise PlaysFormatError(
                f"{report.source}: summed play count {matrix.data.max()} exceeds {_MAX_COUNT}"
            )
        matrix = sp.csr_matrix(
            (matrix.data.astype(np.int32), matrix.indices, matrix.indptr), shape=matrix.shape
        )
        report.rows_read = self.rows_read
        report.zero_count_rows = self.zero_count_rows
        report.plays = int(matrix.nnz)
        report.duplicates_summed = int(len(counts) - matrix.nnz)
        report.users, report.songs = matrix.shape
        report.total_count = int(counts.sum())
        return Interactions(matrix, user_ids, song_ids, report)


def _unify(chunks: list[pa.Array]) -> tuple[np.ndarray, np.ndarray]:
    """Map dictionary chunks onto one id table: (row of each entry, ids in first-seen order).

    Ids that only occurred on bad or zero-count lines are dropped, so every id kept has
    at least one play.
    """
    if not chunks:
        return np.zeros(0, np.int32), np.zeros(0, dtype=object)
    table = pa.Table.from_arrays([pa.chunked_array(chunks, type=chunks[0].type)], ["id"])
    column = table.unify_dictionaries().column("id")
    dictionary = column.chunks[0].dictionary if column.num_chunks else pa.array([], pa.string())
    rows = np.concatenate(
        [chunk.indices.to_numpy(zero_copy_only=False) for chunk in column.chunks]
    ).astype(np.int64)
    used = np.bincount(rows, minlength=len(dictionary)) > 0
    remap = np.cumsum(used) - 1
    ids = dictionary.filter(pa.array(used)).to_numpy(zero_copy_only=False)
    return remap[rows].astype(np.int32), ids


# --------------------------------------------------------------------------- public API


PLAYS_FORMATS = ("triplets", "csv", "parquet")


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class ReadConfig:
    """How `read_plays` reads a file: its keywords as one config, which `coldtune plays
    ingest` takes as options."""

    format: str | None = field(
        default=None,
        metadata=_help(f"{', '.join(PLAYS_FORMATS)}; default: detected from the file (and said)."),
    )
    user_col: str = field(default="user", metadata=_help("User id column (CSV, Parquet)."))
    song_col: str = field(default="song", metadata=_help("Song id column (CSV, Parquet)."))
    count_col: str = field(default="count", metadata=_help("Play count column (CSV, Parquet)."))
    on_bad_lines: str = field(
        default="error", metadata=_help("error: stop at the first bad line; skip: count, go on.")
    )

    def keywords(self) -> dict:
        return dataclasses.asdict(self)


def detect_plays_format(
    path: str | os.PathLike, *, columns: tuple[str, ...] = ("user", "song", "count")
) -> tuple[str, str]:
    """(format, why) of a plays file, read from the file itself, not its name:
    Parquet by its magic bytes; CSV when the first line is a header naming one of
    `columns` (comma-separated, or tab for .tsv/.tab); triplets when it is
    tab-separated without one (the Taste Profile has no header); CSV otherwise."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if head[:4] == b"PAR1":
        return "parquet", "Parquet magic bytes"
    first = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", errors="replace")
    names = {name.strip().strip('"') for name in first.replace("\t", ",").split(",")}
    if names & set(columns):
        return "csv", f"first line is a header ({first[:60]!r})"
    if "\t" in first:
        return "triplets", "tab-separated with no header line, as user<TAB>song<TAB>count"
    return "csv", f"no tab in the first line ({first[:60]!r})"


def read_plays(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    user_col: str = "user",
    song_col: str = "song",
    count_col: str = "count",
    on_bad_lines: str = "error",
    block_size: int = 16 << 20,
) -> Interactions:
    """Read play counts into `Interactions`.

    path : a Taste Profile triplets file (user<TAB>song<TAB>count, no header), a CSV
        (comma, or tab for .tsv) with a header, or a Parquet file.
    format : "triplets" | "csv" | "parquet"; None (default): detected from the file's
        contents (`detect_plays_format`), and the report says which was chosen and why.
    user_col, song_col, count_col : column names (CSV and Parquet).
    on_bad_lines : "error" raises PlaysFormatError naming file, line and reason for the
        first bad line; "skip" skips every bad line and counts them in `.report`.

    Repeated (user, song) rows are summed; rows with count 0 are counted, not stored.
    """
    path = Path(path)
    detected = None
    if format is None and path.is_file() and path.stat().st_size:
        format, detected = detect_plays_format(path, columns=(user_col, song_col, count_col))
    elif format is None:
        format = "triplets"  # the checks below say what is wrong with the file
    if format not in PLAYS_FORMATS:
        raise ParameterError(f"format must be one of {', '.join(PLAYS_FORMATS)}, got {format!r}")
    if on_bad_lines not in ON_BAD_LINES:
        raise ParameterError(f"on_bad_lines must be 'error' or 'skip', got {on_bad_lines!r}")
    if not path.is_file():
        raise PlaysFormatError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise PlaysFormatError(f"{path}: the file is empty; expected (user, song, count) rows")
    report = IngestReport(
        source=str(path), format=format if detected is None else f"{format}: {detected}"
    )

    if format == "parquet":
        bad: list[BadLine] = []
        collector = _Collector()
        for batch in _parquet_batches(path, user_col, song_col, count_col, block_size=block_size):
            _consume(batch, collector, bad, on_bad_lines, path, unit="row")
        return _finish(collector, bad, report, path)

    layout = _csv_layout(path, format, user_col, song_col, count_col)
    if layout.column_names is None:
        _check_columns(
            path, _header(path, layout), {"user": user_col, "song": song_col, "count": count_col}
        )
    try:
        collector = _Collector()
        for batch in _csv_batches(path, layout, checked=False, block_size=block_size, bad=[]):
            keep, counts = _validate(batch, [])
            if not keep.all():
                raise _CleanPassFailed
            collector.add(batch, keep, counts)
        return _finish(collector, [], report, path)
    except _CleanPassFailed:
        pass
    # A bad line exists: read again serially, where every line's number is known.
    bad = []
    collector = _Collector()
    for batch in _csv_batches(path, layout, checked=True, block_size=block_size, bad=bad):
        _consume(batch, collector, bad, on_bad_lines, path, unit="line")
    return _finish(collector, bad, report, path)


def _consume(
    batch: _Batch,
    collector: _Collector,
    bad: list[BadLine],
    on_bad_lines: str,
    path: Path,
    *,
    unit: str,
) -> None:
    keep, counts = _validate(batch, bad)
    if bad and on_bad_lines == "error":
        first = min(bad, key=lambda b: b.line)
        raise PlaysFormatError(
            f"{path}:{first.line}: {first.reason} ({unit} {first.line}); "
            "fix the file, or pass --on-bad-lines skip to skip and count such lines"
        )
    collector.add(batch, keep, counts)


def _finish(
    collector: _Collector, bad: list[BadLine], report: IngestReport, path: Path
) -> Interactions:
    bad = sorted(bad, key=lambda b: b.line)
    report.skipped_lines = len(bad)
    report.skipped_examples = [str(b) for b in bad[:_MAX_EXAMPLES]]
    interactions = collector.interactions(report)
    # Rows the parser could not split never reached the collector; count them as read.
    report.rows_read += sum(b.malformed for b in bad)
    if interactions.matrix.nnz == 0:
        raise PlaysFormatError(
            f"{path}: no plays were read ({report.rows_read} rows, {len(bad)} bad, "
            f"{report.zero_count_rows} with count 0)"
        )
    return interactions


# --------------------------------------------------------------------------- workspace


def save_interactions(interactions: Interactions, workspace: Workspace) -> None:
    """Write matrix.npz, users.parquet, songs.parquet and ingest.json under W/plays/."""
    folder = workspace.plays_dir
    folder.mkdir(parents=True, exist_ok=True)
    for name, ids in (("users", interactions.user_ids), ("songs", interactions.song_ids)):
        with atomic_path(folder / f"{name}.parquet") as tmp:
            pq.write_table(pa.table({"id": pa.array(ids, pa.string())}), tmp)
    with atomic_path(folder / "matrix.npz") as tmp:
        with open(tmp, "wb") as handle:
            sp.save_npz(handle, interactions.matrix, compressed=False)
    if interactions.report is not None:
        write_json(folder / "ingest.json", dataclasses.asdict(interactions.report))


def load_ids(workspace: Workspace) -> Interactions:
    """The ids of the ingested rows and columns, with an empty matrix of their shape.

    For steps that map ids to rows without reading plays from the workspace (WMF on
    Spark reads them from the plays file itself).
    """
    folder = workspace.plays_dir
    hint = "run `coldtune plays ingest PATH --workspace W` first"
    for name in ("users.parquet", "songs.parquet"):
        workspace.require(folder / name, what=f"plays/{name}", hint=hint)
    user_ids = pq.read_table(folder / "users.parquet").column("id").to_numpy()
    song_ids = pq.read_table(folder / "songs.parquet").column("id").to_numpy()
    empty = sp.csr_matrix((len(user_ids), len(song_ids)), dtype=np.int32)
    return Interactions(empty, user_ids, song_ids)


def load_interactions(workspace: Workspace) -> Interactions:
    folder = workspace.plays_dir
    hint = "run `coldtune plays ingest PATH --workspace W` first"
    for name in ("matrix.npz", "users.parquet", "songs.parquet"):
        workspace.require(folder / name, what=f"plays/{name}", hint=hint)
    matrix = sp.load_npz(folder / "matrix.npz").tocsr()
    user_ids = pq.read_table(folder / "users.parquet").column("id").to_numpy()
    song_ids = pq.read_table(folder / "songs.parquet").column("id").to_numpy()
    if matrix.shape != (len(user_ids), len(song_ids)):
        raise WorkspaceError(
            f"{folder}: matrix shape {matrix.shape} does not match {len(user_ids)} users and "
            f"{len(song_ids)} songs; ingest again"
        )
    report_path = folder / "ingest.json"
    report = (
        IngestReport(**read_json(report_path, what="", hint="")) if report_path.exists() else None
    )
    return Interactions(matrix, user_ids, song_ids, report)


# --------------------------------------------------------------------------- one listener


def read_listener_plays(path: str | os.PathLike) -> tuple[dict[str, float], list[BadLine]]:
    """One listener's plays, a song id and a play count per line: {song: count} and
    the lines skipped. Fields are separated by a tab, a comma or spaces; a line with
    only an id counts one play; a first line naming the columns (`song,count`), blank
    lines and `#` comments are skipped; a song listed twice adds up. A line whose
    count is not a number >= 0 is skipped and reported, not fatal."""
    path = Path(path)
    if not path.is_file():
        raise PlaysFormatError(f"{path}: no such file (one song id and play count per line)")
    plays: dict[str, float] = {}
    bad: list[BadLine] = []
    first = True
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, text in enumerate(handle, start=1):
            text = text.split("#", 1)[0].strip()
            if not text:
                continue
            header, first = first, False
            fields = text.replace("\t", ",").replace(" ", ",").split(",")
            fields = [f.strip().strip('"') for f in fields if f.strip()]
            if len(fields) > 2:
                bad.append(BadLine(number, f"{len(fields)} fields, expected song[,count]", True))
                continue
            song, count = fields[0], fields[1] if len(fields) == 2 else "1"
            try:
                value = float(count)
            except ValueError:
                if header:  # the first line names the columns
                    continue
                bad.append(BadLine(number, f"count {count!r} is not a number"))
                continue
            if not np.isfinite(value) or value < 0:
                bad.append(BadLine(number, f"count {count!r} is not a number >= 0"))
                continue
            plays[song] = plays.get(song, 0.0) + value
    if not plays:
        problems = "; ".join(map(str, bad[:3])) or "the file holds no song"
        raise PlaysFormatError(f"{path}: no usable line ({problems})")
    return plays, bad
