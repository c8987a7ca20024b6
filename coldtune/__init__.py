"""coldtune: recommend songs nobody has played yet.

Weighted matrix factorization of play counts (section 3 of van den Oord, Dieleman and
Schrauwen, "Deep content-based music recommendation", NIPS 2013), latent factors
predicted from audio, and the paper's cold-start protocol.
"""

from coldtune import metrics
from coldtune.cf.wmf import WeightedMatrixFactorization, WMFConfig
from coldtune.data.plays import Interactions, read_plays
from coldtune.workspace import Workspace

__all__ = [
    "Interactions",
    "WMFConfig",
    "WeightedMatrixFactorization",
    "Workspace",
    "metrics",
    "read_plays",
]
__version__ = "0.1.0"
