"""Where each artefact of an experiment lives, and atomic writes.

A workspace is one folder per experiment (see DESIGN.md). Every step reads what the
step before wrote and writes its own artefacts through `atomic_path`, so a step killed
half-way leaves the previous artefact (or none) behind, never a half-written file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from coldtune.errors import WorkspaceError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    The rename is atomic on POSIX filesystems, so readers see the old file or the new
    one, never a partial write. On an exception the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` (dataclasses allowed) as indented JSON, atomically."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, *, what: str, hint: str) -> Any:
    path = Path(path)
    if not path.exists():
        raise WorkspaceError(f"{path}: {what} not found; {hint}")
    return json.loads(path.read_text())


def fingerprint(
    paths: Iterable[str | os.PathLike] = (), *, root=None, arrays: Iterable = (), **settings
) -> str:
    """A content hash (SHA-256) of what an artefact was made from: files, arrays in
    memory (ids, factors) and settings.

    The one fingerprint of coldtune: results, caches, checkpoints and parts carry it, so
    an artefact made from other inputs is never taken for a current one. Files are named
    relative to `root` (when given) so a workspace copied elsewhere keeps its
    fingerprints; a path that does not exist counts as absent.
    """
    digest = hashlib.sha256(repr(sorted(settings.items())).encode())
    for path in sorted(Path(p) for p in paths):
        name = path.relative_to(root).as_posix() if root is not None else path.name
        digest.update(name.encode() + b"\0")
        if not path.exists():
            digest.update(b"absent\0")
            continue
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
    for array in arrays:
        array = np.asarray(array)
        digest.update(f"{array.dtype.kind}{array.shape}\0".encode())
        if array.dtype.kind in "OUS":  # ids: their text, one per line
            digest.update("\n".join(map(str, array.ravel())).encode())
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    # numpy scalars and paths appear in summaries; JSON needs plain Python values
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


class Workspace:
    """The folder of one experiment, and where each artefact lives in it."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def plays_dir(self) -> Path:
        return self.root / "plays"

    @property
    def split_path(self) -> Path:
        return self.root / "split.json"

    @property
    def wmf_dir(self) -> Path:
        return self.root / "wmf"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def tags_path(self) -> Path:
        return self.root / "tags" / "tags.parquet"

    @property
    def releases_path(self) -> Path:
        """Songs added by `coldtune add` (new releases: audio, no plays)."""
        return self.root / "releases.csv"

    @property
    def warmup_dir(self) -> Path:
        """First plays of cold songs and their warmed-up factors (`coldtune warm-up`)."""
        return self.root / "warmup"

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold an exclusive lock named `name` on this workspace for the block, between
        processes and threads alike (flock on W/.locks/NAME): a step that reads a file,
        changes it and writes it back takes one, so that two runs never lose each
        other's rows."""
        path = self.root / ".locks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def bow_dir(self) -> Path:
        return self.root / "bow"

    @property
    def models_root(self) -> Path:
        return self.root / "models"

    @property
    def references_root(self) -> Path:
        """Reference rows of the demo world (its ceilings), never a model's input."""
        return self.root / "references"

    def models_dir(self, name: str) -> Path:
        return self.root / "models" / name

    def require(self, path: Path, *, what: str, hint: str) -> Path:
        if not path.exists():
            raise WorkspaceError(f"{path}: {what} not found in workspace {self.root}; {hint}")
        return path
