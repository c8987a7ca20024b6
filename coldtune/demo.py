"""`make demo`: every step that exists, end to end, ending with the results table.

Until the embedded demo catalogue (real audio, simulated listeners) exists, the plays
come from the Taste-Profile-shaped generator of `coldtune.data.synth`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from rich.console import Console

from coldtune import pipeline
from coldtune.cf.wmf import WMFConfig
from coldtune.data.splits import SplitConfig
from coldtune.data.synth import synth_config, synth_plays, write_plays
from coldtune.workspace import Workspace, write_json


def run_demo(
    workspace: Workspace, *, size: str = "medium", backend: str = "implicit", console: Console
) -> dict:
    timings: dict[str, float] = {}

    @contextmanager
    def stage(name: str):
        console.print(f"[bold]{name}[/]")
        start = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - start, 2)
        console.print(f"  done in {timings[name]:.1f} s")

    triplets = workspace.root / "source" / "train_triplets.txt"
    with stage(f"generate Taste-Profile-shaped plays ({size})"):
        write_plays(synth_plays(synth_config(size)), triplets)
    with stage("ingest"):
        interactions = pipeline.ingest(triplets, workspace)
        console.print("  " + interactions.report.summary().replace("\n", "\n  "), highlight=False)
    with stage("split: hold out 20% of songs as cold"):
        split = pipeline.make_split(workspace, SplitConfig(cold_fraction=0.2))
        console.print(
            f"  {len(split.users):,} users, {len(split.warm_songs):,} warm, "
            f"{len(split.cold_songs):,} cold songs"
        )
    with stage(f"WMF on warm songs ({backend})"):
        result = pipeline.fit_wmf(workspace, WMFConfig(backend=backend))
        objective = result.model.objective_
        console.print(f"  objective {objective[0]:.6g} -> {objective[-1]:.6g}")
    with stage("evaluate"):
        results = pipeline.evaluate(workspace)
    write_json(workspace.results_dir / "timings.json", timings)
    console.print()
    console.print(pipeline.results_markdown(results), highlight=False)
    return results
