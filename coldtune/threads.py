"""One thread for work made of many small matrix products.

A clip's few CNN windows, a logistic regression on a few thousand songs, t-SNE's
gradient on a few thousand points: each product is too small to split across threads,
and with several threads per process (torch's and the BLAS's own pools), processes
that share cores wait on each other. Measured on the 2 shared cores of the development
machine (under load): the CNN on one clip 16 ms with one thread vs 88 ms with two;
t-SNE of 2,000 songs 18 s vs 73 s; one logistic regression (1,440 songs, 158 dims)
0.027 s vs 0.47 s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with torch and the BLAS / OpenMP pools at one thread each."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)
