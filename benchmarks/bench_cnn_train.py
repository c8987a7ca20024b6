"""CNN training throughput on a CPU (issue 16): the network `coldtune train cnn` trains
by default (CNNConfig), model alone against the training loop's data pipeline, and
what each setting of the step is worth.

    python benchmarks/bench_cnn_train.py --workspace .cache/demo --repeats 5

A step is one optimiser step on one batch as `CNN.fit` makes it: `batch_size` songs x
`windows_per_song` random 3 s windows (forward under the configured precision, MSE,
backward, AdamW). Timed, interleaved, medians of `--repeats`:

- variants of the step on fixed inputs (model alone): the default (CNNConfig's
  precision, torch's threads, the convolutions as matrix products in the frames-major
  layout), the Conv1d modules on the channels-first transpose (what every CPU ran
  before), fp32 (where the default is bf16), one thread, and `torch.compile` of the
  network
  (inductor; its compile time is printed apart);
- the pipeline: the same default step with each batch read from the workspace's
  feature store, either by `_read_ahead` (the next batch read in a thread during this
  step) or in turn (read, then step); and the reads alone.

The pipeline's windows/s over the model-alone default's says whether the data keeps up
(the issue's target: at least 95%). Channels-last is not a variant: the networks are
1-D convolutions over time (3-D tensors), which have no channels-last layout.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import command, interleaved_medians, machine

from coldtune.audio.store import FeatureStore
from coldtune.content.cnn import WINDOW_FRAMES, NetworkConfig, build_cnn, window_batch
from coldtune.content.configs import CNNConfig
from coldtune.content.objectives import mse_loss
from coldtune.content.training import PRECISIONS, _read_ahead, auto_precision
from coldtune.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", required=True, help="a workspace with a feature store")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per timing")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    args = parser.parse_args()
    config = CNNConfig()
    precision = auto_precision() if config.precision == "auto" else config.precision
    windows_per_step = config.batch_size * config.windows_per_song
    print(
        f"# {command()}\n# {machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
        f"network {config.architecture}, {config.batch_size} songs x {config.windows_per_song} "
        f"windows = {windows_per_step} windows a step, precision {precision}; "
        f"median of {args.repeats} interleaved runs of {args.steps} steps"
    )
    store = FeatureStore(Workspace(args.workspace).features_dir)
    songs = np.asarray(store.song_ids)
    n_mels = store.width("mel")
    rng = np.random.default_rng(0)
    fixed = torch.from_numpy(
        store.random_windows(
            songs[rng.integers(0, len(songs), windows_per_step)], frames=WINDOW_FRAMES, rng=rng
        ).astype(np.float32)
    )
    targets = torch.as_tensor(rng.standard_normal((windows_per_step, 50)), dtype=torch.float32)
    device = torch.device("cpu")
    threads = torch.get_num_threads()

    def trainer(
        *, precision: str, compiled: bool = False, one_thread: bool = False, conv1d: bool = False
    ):
        torch.manual_seed(0)
        network = build_cnn(
            NetworkConfig(architecture=config.architecture, n_mels=n_mels, dropout=config.dropout)
        )
        network.frames_major_on_cpu = not conv1d
        network.train()
        optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate)
        forward = torch.compile(network) if compiled else network

        def step(inputs: torch.Tensor) -> None:
            optimizer.zero_grad(set_to_none=True)
            with PRECISIONS[precision](device):
                predicted = forward(inputs)
            mse_loss(predicted.float(), targets).backward()
            optimizer.step()

        def run() -> None:
            if one_thread:
                torch.set_num_threads(1)
            try:
                for _ in range(args.steps):
                    step(fixed)
            finally:
                torch.set_num_threads(threads)

        return step, run

    def read(rows: np.ndarray, read_rng: np.random.Generator) -> torch.Tensor:
        # what CNN.fit's make_batch reads
        return window_batch(store, songs[np.repeat(rows, config.windows_per_song)], rng=read_rng)

    batches = [(None, rng.integers(0, len(songs), config.batch_size)) for _ in range(args.steps)]
    default_step, default_run = trainer(precision=precision)

    def pipeline() -> None:
        for _, inputs in _read_ahead(batches, read, np.random.default_rng(1)):
            default_step(inputs)

    def in_turn() -> None:
        read_rng = np.random.default_rng(1)
        for _, rows in batches:
            default_step(read(rows, read_rng))

    def reads() -> None:
        read_rng = np.random.default_rng(1)
        for _, rows in batches:
            read(rows, read_rng)

    runs = {f"model alone, {precision} (the default)": default_run}
    runs[f"model alone, {precision}, Conv1d modules (before)"] = trainer(
        precision=precision, conv1d=True
    )[1]
    if precision != "fp32":  # "auto" chose bf16: what it gains
        runs["model alone, fp32"] = trainer(precision="fp32")[1]
    runs[f"model alone, {precision}, 1 thread"] = trainer(precision=precision, one_thread=True)[1]
    if not args.no_compile:
        start = time.perf_counter()
        compiled = trainer(precision=precision, compiled=True)[1]
        compiled()  # compiles forward and backward
        print(f"torch.compile: {time.perf_counter() - start:.1f} s to compile")
        runs[f"model alone, {precision}, torch.compile"] = compiled
    runs[f"pipeline: next batch read in a thread (read-ahead), {precision}"] = pipeline
    runs[f"pipeline: each batch read, then its step, {precision}"] = in_turn
    runs["store reads alone"] = reads
    for run in runs.values():
        run()  # warm-up: allocations, oneDNN's kernel choice
    medians = interleaved_medians(runs, args.repeats)
    base = medians[f"model alone, {precision} (the default)"][0]
    for name, (seconds, times) in medians.items():
        rate = args.steps * windows_per_step / seconds
        spread = f"runs {min(times) * 1000 / args.steps:.0f}-{max(times) * 1000 / args.steps:.0f}"
        print(
            f"  {name:50s} {rate:7.0f} windows/s  {1000 * seconds / args.steps:7.1f} ms/step"
            f"  ({base / seconds:4.2f}x the default; {spread} ms)"
        )


if __name__ == "__main__":
    main()
