"""CNN throughput (section 4.2): training windows/s in fp32 and bf16 autocast, reading
random windows from the memory-mapped store, and the time to predict a 30 s clip.

    python benchmarks/bench_cnn.py --workspace .cache/demo --repeats 5

A "step" is one optimiser step on a batch of 64 random 3 s windows (forward, MSE,
backward, AdamW), on the CPU's torch threads. "load" is reading 64 random windows from
the feature store (what the training loop does before each step); it must take a small
fraction of a step, or the model waits for data. Without --workspace, the windows are
random numbers and the load figure is left out.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import command, interleaved_medians, machine

from coldtune.content.cnn import (
    CNN_ARCHITECTURES,
    WINDOW_FRAMES,
    NetworkConfig,
    build_cnn,
    predict_clip,
    window_batch,
)
from coldtune.content.objectives import mse_loss
from coldtune.content.training import PRECISIONS

BATCH = 64
CLIP_FRAMES = 1 + 30 * 22050 // 512  # a 30 s clip in the store: 1,292 frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", help="a workspace with a feature store, to time loading")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="optimiser steps per timing")
    args = parser.parse_args()
    print(
        f"# {command()}\n# {machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    rng = np.random.default_rng(0)
    windows = torch.as_tensor(rng.normal(-30, 15, (BATCH, WINDOW_FRAMES, 128)), dtype=torch.float32)
    targets = torch.as_tensor(rng.standard_normal((BATCH, 50)), dtype=torch.float32)
    device = torch.device("cpu")

    for architecture in CNN_ARCHITECTURES:
        runs = {}
        for precision in PRECISIONS:
            torch.manual_seed(0)
            model = build_cnn(NetworkConfig(architecture=architecture))
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

            def steps(model=model, optimizer=optimizer, precision=precision) -> None:
                for _ in range(args.steps):
                    optimizer.zero_grad(set_to_none=True)
                    with PRECISIONS[precision](device):
                        predicted = model(windows)
                    mse_loss(predicted.float(), targets).backward()
                    optimizer.step()

            steps()  # warm-up: allocations, oneDNN kernel choice
            runs[precision] = steps
        medians = interleaved_medians(runs, args.repeats)
        fp32 = medians["fp32"][0]
        for precision, (seconds, _) in medians.items():
            rate = args.steps * BATCH / seconds
            print(
                f"{architecture:15s} train {precision}: {rate:7.0f} windows/s "
                f"({1000 * seconds / args.steps:6.1f} ms/step, {fp32 / seconds:4.2f}x fp32)"
            )

        model = build_cnn(NetworkConfig(architecture=architecture))
        clip = rng.normal(-30, 15, (CLIP_FRAMES, 128)).astype(np.float32)
        predict_clip(model, clip)
        ((seconds, _),) = interleaved_medians(
            {"predict": lambda m=model, c=clip: predict_clip(m, c)}, args.repeats * 4
        ).values()
        print(
            f"{architecture:15s} predict a 30 s clip ({CLIP_FRAMES // WINDOW_FRAMES} windows): "
            f"{1000 * seconds:.1f} ms"
        )

    if args.workspace:
        from coldtune.audio.store import FeatureStore
        from coldtune.workspace import Workspace

        store = FeatureStore(Workspace(args.workspace).features_dir)
        songs = np.asarray(store.song_ids)
        load_rng = np.random.default_rng(1)

        def load() -> None:
            for _ in range(args.steps):
                batch = songs[load_rng.integers(0, len(songs), BATCH)]
                window_batch(store, batch, rng=load_rng)  # what CNN.fit reads a step

        load()
        ((seconds, _),) = interleaved_medians({"load": load}, args.repeats).values()
        print(
            f"load 64 random windows from the store ({len(songs):,} songs): "
            f"{1000 * seconds / args.steps:.2f} ms/batch"
        )


if __name__ == "__main__":
    main()
