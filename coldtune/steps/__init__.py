"""The steps: the only code that reads and writes a Workspace (DESIGN.md).

Each CLI command calls one of them and prints what it returns; Python users call them
directly. A step writes its artefacts atomically, so killing it leaves the previous
state intact, and reports progress through callbacks, never by printing.

    plays       ingest (Taste Profile triplets, CSV, Parquet), split
    wmf         fit (implicit, torch, Spark), load_wmf
    train       run: a content model on the warm songs, its cold-song predictions
    evaluate    evaluate (Tables 2-3), merge_evaluation (parts of --users i/n)
    catalogue   load_catalogue (what serving answers from), search, recommend_all
    releases    add_releases (new songs: a clip, no plays)
    warmup      the prior fold-in of cold songs' first plays: choose, table, apply
    analyses    tags (section 5.1), song_map (Figure 1)
    report      write_report (one HTML page)
    experiment  run_experiment (split -> WMF -> every model -> the table)
    demo        run_demo (the demo world, end to end)
"""

from coldtune.steps import (
    analyses,
    catalogue,
    demo,
    evaluate,
    experiment,
    plays,
    releases,
    report,
    train,
    warmup,
    wmf,
)

__all__ = [
    "analyses",
    "catalogue",
    "demo",
    "evaluate",
    "experiment",
    "plays",
    "releases",
    "report",
    "train",
    "warmup",
    "wmf",
]
