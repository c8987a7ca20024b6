"""coldtune: recommend songs nobody has played yet.

Weighted matrix factorization of play counts (section 3 of van den Oord, Dieleman and
Schrauwen, "Deep content-based music recommendation", NIPS 2013), latent factors
predicted from audio, and the paper's cold-start protocol.

The names below are imported when first used, so `import coldtune` (and the CLI's
`--help`) loads neither torch nor pyspark.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Interactions": "coldtune.data.plays",
    "read_plays": "coldtune.data.plays",
    "WMFConfig": "coldtune.cf.wmf",
    "WeightedMatrixFactorization": "coldtune.cf.wmf",
    "Workspace": "coldtune.workspace",
    "content": "coldtune.content",
    "metrics": "coldtune.metrics",
    "steps": "coldtune.steps",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'coldtune' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if module.__name__ == f"coldtune.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
