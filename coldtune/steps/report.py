"""`coldtune report`: one HTML page with everything a workspace has shown.

The results table (W/results/evaluation.json), tag prediction (section 5.1), similar
songs (Table 4), the song map (Figure 1), the warm-up curve (W/results/warmup.json, when
`coldtune warm-up table` has made it) and how long each stage took. Analyses that
are missing, or older than the factors and models they read, are computed first
(and kept in W/results/, so a second report is quick). The page is one file: the map's
PNG is inlined; the interactive map is a link to W/results/map/map.html beside it.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from coldtune.eval.tags import PAPER_AUC, ROW_LABELS, SONG_SETS
from coldtune.steps.analyses import song_map as write_map
from coldtune.steps.analyses import tags as tag_experiment
from coldtune.steps.catalogue import inputs_key, load_catalogue
from coldtune.workspace import Workspace, atomic_path, read_json, write_json

EXAMPLES = 5  # query songs in the similar-songs table
NEIGHBOURS = 5  # songs shown per query and per column


def write_report(
    workspace: Workspace,
    *,
    model: str | None = None,
    on_stage: Callable[[str, float], None] | None = None,
) -> Path:
    """Write W/results/report.html and return its path.

    on_stage : called with (stage name, seconds) after each stage.
    """
    timings: dict[str, float] = {}

    def timed(name: str, work: Callable):
        start = time.perf_counter()
        result = work()
        timings[name] = round(time.perf_counter() - start, 2)
        if on_stage is not None:
            on_stage(name, timings[name])
        return result

    results_dir = workspace.results_dir
    catalogue = timed(
        "load factors, clip model predictions", lambda: load_catalogue(workspace, model=model)
    )
    key = inputs_key(workspace, catalogue.model_name)
    tags = _fresh(results_dir / "tags.json", key)
    if tags is None and workspace.tags_path.exists():
        tags = timed(
            "tag prediction (section 5.1)",
            lambda: tag_experiment(workspace, model=catalogue.model_name),
        )
    song_map = _fresh(results_dir / "map" / "map.json", key)
    if song_map is None and int(catalogue.has_audio.sum()) >= 4:
        song_map = timed(
            "song map: t-SNE (Figure 1)", lambda: write_map(workspace, catalogue=catalogue)
        )
    examples = timed("similar songs (Table 4)", lambda: similar_examples(catalogue))
    evaluation = (
        read_json(results_dir / "evaluation.json", what="", hint="")
        if (results_dir / "evaluation.json").exists()
        else None
    )
    warmup = (
        read_json(results_dir / "warmup.json", what="", hint="")
        if (results_dir / "warmup.json").exists()
        else None
    )
    stage_times = (
        read_json(results_dir / "timings.json", what="", hint="")
        if (results_dir / "timings.json").exists()
        else {}
    )
    write_json(results_dir / "report_timings.json", timings)
    page = render(
        workspace=workspace,
        catalogue=catalogue,
        evaluation=evaluation,
        tags=tags,
        song_map=song_map,
        examples=examples,
        pipeline_times=stage_times,
        report_times=timings,
        warmup=warmup,
    )
    path = results_dir / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def _fresh(path: Path, key: str) -> dict | None:
    """The JSON at `path` if it was computed from the current inputs, else None."""
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    return saved if saved.get("inputs") == key else None


def similar_examples(catalogue, *, n_queries: int = EXAMPLES, n: int = NEIGHBOURS, seed: int = 0):
    """Table 4 for a few cold songs drawn at random (seeded): their nearest songs by
    usage (WMF, cold songs folded in) and by predicted factors."""
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(catalogue.cold & catalogue.has_audio)
    if len(candidates) == 0:
        candidates = np.flatnonzero(catalogue.has_audio)
    queries = np.sort(rng.choice(candidates, size=min(n_queries, len(candidates)), replace=False))
    rows = []
    for q in queries:
        found = catalogue.similar(str(catalogue.song_ids[q]), n=n)
        rows.append({"query": int(q), **{space: found[space] for space in found}})
    return rows


# --------------------------------------------------------------------------- HTML

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 24px auto; padding: 0 16px;
       color: #222; line-height: 1.45; }
h1 { font-size: 24px; } h2 { font-size: 19px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: 14px; } .cold { color: #1f77b4; font-weight: 600; }
img { max-width: 100%; border: 1px solid #ddd; }
ol { margin: 0; padding-left: 20px; }
"""


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if j in numeric else f"<td>{c}</td>"
                  for j, c in enumerate(row))
        + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table>"


def _song(catalogue, row: int) -> str:
    text = html.escape(catalogue.label(row))
    return text + (' <span class="cold">(cold)</span>' if catalogue.cold[row] else "")


def render(
    *,
    workspace,
    catalogue,
    evaluation,
    tags,
    song_map,
    examples,
    pipeline_times,
    report_times,
    warmup=None,
) -> str:
    """The report's HTML from what `write_report` gathered."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>coldtune report: {html.escape(workspace.root.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>coldtune report: {html.escape(workspace.root.name)}</h1>",
        f"<p class='note'>{len(catalogue):,} songs ({int(catalogue.cold.sum()):,} cold, held "
        f"out of WMF and of every content model), {catalogue.n_users:,} users, "
        f"{catalogue.user_factors.shape[1]} factors. Clip model: "
        f"<b>{html.escape(catalogue.model_name)}</b>. Written "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.</p>",
    ]
    parts.append("<h2 id='results'>Cold-start recommendation (section 5.2)</h2>")
    if evaluation is None:
        parts.append(
            "<p>No results table yet: run <code>coldtune evaluate --workspace W</code>.</p>"
        )
    else:
        parts.append(
            f"<p class='note'>{evaluation['n_users_evaluated']:,} users evaluated (of "
            f"{evaluation['n_users']:,}) on the {evaluation['n_cold_songs']:,} cold songs. "
            "Each user's cold songs are ranked by x<sub>u</sub><sup>T</sup>y'; random and "
            "upper bound (cold songs' factors folded in from their real plays) frame the "
            "content models.</p>"
        )
        parts.append(
            _table(
                ["Model", f"mAP@{evaluation['k']}", "AUC"],
                [
                    [html.escape(r["model"]), f"{r['map']:.5f}", f"{r['auc']:.5f}"]
                    for r in evaluation["rows"]
                ],
                numeric={1, 2},
            )  # fmt: skip
        )
    parts.append("<h2 id='tags'>Tag prediction (section 5.1)</h2>")
    if tags is None:
        parts.append("<p>No tags in this workspace: <code>coldtune tags ingest</code> them.</p>")
    else:
        parts.append(_tags_html(tags))
    parts.append("<h2 id='similar'>Similar songs (Table 4)</h2>")
    parts.append(
        "<p class='note'>Cold songs drawn at random, and their nearest songs by the cosine "
        "of usage patterns X y, computed through X<sup>T</sup>X. <b>WMF</b>: WMF's factors "
        "(a cold query's factors are folded in from its held-out plays: what usage would "
        "say). <b>Predicted</b>: the clip model's factors for every song, from audio "
        "alone.</p>"
    )
    rows = []
    for example in examples:
        cells = [_song(catalogue, example["query"])]
        for space in ("usage", "predicted"):
            items = "".join(
                f"<li>{_song(catalogue, nb.index)} "
                f"<span class='note'>{nb.similarity:.4f}</span></li>"
                for nb in example[space]
            )
            cells.append(f"<ol>{items}</ol>")
        rows.append(cells)
    parts.append(_table(["Query", "Most similar (WMF)", "Most similar (predicted)"], rows))
    parts.append("<h2 id='map'>Song map (Figure 1)</h2>")
    png = workspace.results_dir / "map" / "map.png"
    if song_map is None or not png.exists():
        parts.append("<p>No map: it needs at least 4 songs with audio.</p>")
    else:
        encoded = base64.b64encode(png.read_bytes()).decode()
        parts.append(
            "<p class='note'>t-SNE of the predicted usage patterns of every song with audio "
            f"({len(song_map['song_ids']):,} songs), coloured by "
            f"{', '.join(html.escape(t) for t in song_map['colour_tags']) or 'nothing'}; cold "
            "songs ringed. <a href='map/map.html'>The interactive map</a>: hover a point for "
            "the song, click it to hear its clip.</p>"
            f"<img alt='song map' src='data:image/png;base64,{encoded}'>"
        )
    parts.append("<h2 id='warmup'>Warm-up: cold songs from their first plays</h2>")
    parts.append(_warmup_html(workspace, warmup))
    parts.append("<h2 id='timing'>Time of each stage</h2>")
    timing_rows = [[html.escape(k), f"{v:.1f}"] for k, v in pipeline_times.items()]
    timing_rows += [
        [html.escape(k) + " (this report)", f"{v:.1f}"] for k, v in report_times.items()
    ]
    parts.append(_table(["Stage", "seconds"], timing_rows, numeric={1}))
    if not pipeline_times:
        parts.append("<p class='note'>Pipeline stages are timed by <code>coldtune demo</code>.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _tags_html(tags: dict) -> str:
    songs, used = tags["songs"], tags["tags_used"]
    rows = []
    for row in tags["rows"]:
        name = row["features"]
        cells = [html.escape(ROW_LABELS[name].format(model=tags["model"])), str(tags["dims"][name])]
        cells += [f"{row[s]:.3f}" if row[s] is not None else "-" for s in SONG_SETS]
        cells.append(f"{PAPER_AUC[name]:.3f}" if name in PAPER_AUC else "-")
        rows.append(cells)
    return (
        f"<p class='note'>Mean AUC over tags of a logistic regression per tag, "
        f"{tags['config']['folds']}-fold cross-validation. Tags: the {len(tags['tags'])} most "
        f"frequent among warm songs; {used['warm']} have enough songs among the "
        f"{songs['warm']:,} warm songs and {used['cold']} among the {songs['cold']:,} cold "
        "songs. On warm songs the predicted factors are in-sample (the clip model was "
        "trained on them); on cold songs they come from audio no model has seen, and there "
        "are no WMF factors.</p>"
        + _table(
            ["Features", "dims", "warm songs", "cold songs", "paper (warm)"],
            rows,
            numeric={1, 2, 3, 4},
        )
    )


def _warmup_html(workspace, warmup: dict | None) -> str:
    """The warm-up curve (W/results/warmup.png) and its table, or how to make them."""
    from coldtune.steps.warmup import ROWS, is_current

    png = workspace.results_dir / "warmup.png"
    if warmup is None or not png.exists():
        return (
            "<p>No warm-up table yet: run <code>coldtune warm-up table --workspace W</code> "
            "(it chooses the prior weight on warm songs first).</p>"
        )
    note = (
        f"<p class='note'>Each of the {warmup['n_cold_songs']:,} cold songs reveals k of its "
        "listeners (min(k, n - 1) of n); every user ranks the cold songs, their revealed "
        "ones left out, against the cold songs they played that were not revealed. "
        f"<b>audio</b>: {html.escape(warmup['model'])}'s factors; <b>fold-in</b>: eq. (3) "
        "from the revealed plays; <b>audio + fold-in</b>: the same with the audio factors "
        f"as prior, weight {html.escape(str(warmup['prior_weight']))} (chosen on "
        f"{html.escape(warmup['prior_weight_chosen_on'])}, never on cold songs); "
        "<b>upper bound</b>: from all their plays. Mean ± SE over "
        f"{len(warmup['seeds'])} draws of the revealed listeners (split seed "
        f"{warmup['split_seed']}).</p>"
    )
    if not is_current(workspace, warmup):
        note += (
            "<p class='note'><b>Older than the workspace's split, factors or clip model</b>: "
            "run <code>coldtune warm-up table</code> again.</p>"
        )
    rows = []
    for k, entry in warmup["per_k"].items():
        cells = [k]
        for row in warmup.get("rows", ROWS):
            figures = entry["rows"][row]
            cells.append(
                " / ".join(
                    f"{figures[m]['mean']:.4f} ± {figures[m]['se']:.4f}" for m in ("map", "auc")
                )
            )
        rows.append(cells)
    encoded = base64.b64encode(png.read_bytes()).decode()
    return (
        note
        + f"<img alt='warm-up curve' src='data:image/png;base64,{encoded}'>"
        + _table(
            [
                "k",
                *(f"{html.escape(r)}: mAP@{warmup['k']} / AUC" for r in warmup.get("rows", ROWS)),
            ],
            rows,
            numeric=set(range(len(warmup.get("rows", ROWS)) + 1)),
        )
    )
