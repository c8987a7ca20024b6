"""`coldtune evaluate`: the results table of section 5.2 for every set of cold-song
factors in the workspace, one process or merged from parts (`--users i/n`)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from coldtune import content
from coldtune.data.ids import IdMap
from coldtune.data.plays import Interactions, load_interactions
from coldtune.data.splits import ColdStartSplit, load_split
from coldtune.errors import WorkspaceError
from coldtune.eval.parts import UserPart, merge_figures, part_figures
from coldtune.eval.protocol import (
    evaluate_scores,
    evaluated_users,
    factor_scores,
    random_factors,
)
from coldtune.eval.tables import markdown_table
from coldtune.steps.wmf import load_wmf
from coldtune.workspace import Workspace, atomic_path, fingerprint, read_json, write_json

TABLE_TITLE = "Cold-start recommendation (section 5.2)"


def evaluate(
    workspace: Workspace,
    *,
    k: int = 500,
    device: str | None = None,
    seed: int = 0,
    models: list[str] | None = None,
    users: UserPart | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """`coldtune evaluate`: the results table for every set of cold-song factors.

    users : one range of the evaluated users (`--users i/n`, for one machine of n); its
        figures go to W/results/parts/evaluation-partIofN.json for `merge_evaluation`.
    on_progress : called with (row name, users done, users to do) as evaluation goes.
    models : the content models to score (names of W/models/ folders); default: all.

    Rows: random factors, every content model's predictions found in W/models/, and the
    upper bound (cold songs' factors folded in from their real plays, X fixed).
    Writes W/results/evaluation.json and evaluation.md; returns the JSON.
    """
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    model = load_wmf(workspace, split=split)
    cold_plays = split.cold_plays(interactions.matrix)
    chosen = evaluated_users(cold_plays)
    if users is not None:
        chosen = users.select(chosen)
    models = None if models is None else sorted(models)
    predictions = sorted(
        (
            (name, load)
            for name, load in _content_predictions(workspace, interactions, split)
            if models is None or name in models
        ),
        key=lambda found: content.table_order(found[0]),
    )
    # the demo world's reference rows (W/references/), read from its records: after the
    # models, before the upper bound, each marked as a reference
    references = sorted(
        _content_predictions(workspace, interactions, split, root=workspace.references_root),
        key=lambda found: REFERENCE_ORDER.index(found[0]) if found[0] in REFERENCE_ORDER else 9,
    )
    candidates: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("random", lambda: random_factors(model.song_factors_, len(split.cold_songs), seed=seed)),
        *predictions,
        *references,
        ("upper bound", lambda: model.fold_in_songs(cold_plays)),
    ]
    reference_rows = {name for name, _ in references}
    rows = []
    for name, song_factors in candidates:
        start = time.perf_counter()
        user_factors, songs = _with_users(song_factors(), model.user_factors_)
        result = evaluate_scores(
            factor_scores(user_factors, songs, device=device),
            cold_plays,
            k=k,
            users=chosen,
            device=device,
            on_progress=(None if on_progress is None else functools.partial(on_progress, name)),
        )
        figures = part_figures({"map": result.average_precision, "auc": result.auc})
        row = {"model": name, **figures, "seconds": round(time.perf_counter() - start, 3)}
        if name in reference_rows:
            row["reference"] = True
        rows.append(row)
    results = {
        "title": TABLE_TITLE,
        "k": k,
        "seed": seed,
        "n_users": len(split.users),
        "n_users_evaluated": len(chosen),
        "n_songs": len(split.warm_songs) + len(split.cold_songs),
        "n_cold_songs": len(split.cold_songs),
        "factors": model.factors,
        "rows": rows,
        "models": models,
        "fingerprint": _evaluation_fingerprint(workspace, k=k, seed=seed, models=models),
    }
    folder = workspace.results_dir
    if users is not None:
        results["part"] = str(users)
        write_json(folder / "parts" / f"evaluation-{users.name}.json", results)
        return results
    write_json(folder / "evaluation.json", results)
    with atomic_path(folder / "evaluation.md") as tmp:
        tmp.write_text(results_markdown(results))
    return results


def _evaluation_fingerprint(
    workspace: Workspace, *, k: int, seed: int, models: list[str] | None = None
) -> str:
    """What the table depends on: split, WMF factors and settings, the predictions of
    the content models scored (`models`, default: every one in W/models/)."""
    root = workspace.root
    inputs = [workspace.split_path, workspace.wmf_dir / "factors.npz"]
    inputs.append(workspace.wmf_dir / "config.json")
    inputs += [
        path
        for path in sorted(root.glob("models/*/predictions.npz"))
        if models is None or path.parent.name in models
    ]
    inputs += sorted(root.glob("references/*/predictions.npz"))
    return fingerprint(inputs, root=root, k=k, seed=seed, models=models)


def merge_evaluation(workspace: Workspace) -> dict:
    """`coldtune evaluate --merge`: the table of all users from the parts evaluated with
    `--users i/n` (in W/results/parts/, copied there from each machine's workspace).

    Each figure is the mean of the parts' means weighted by their numbers of users,
    which is the one-process figure. Parts computed from other factors, split or
    predictions than the workspace now holds are left out; the rest must be the n parts
    of one `i/n`. Writes W/results/evaluation.json and evaluation.md.
    """
    folder = workspace.results_dir / "parts"
    hint = "run `coldtune evaluate --users i/n --workspace W` for each part first"
    paths = sorted(folder.glob("evaluation-part*of*.json")) if folder.is_dir() else []
    if not paths:
        raise WorkspaceError(f"{folder}: no partial evaluations; {hint}")
    current: dict[tuple, str] = {}
    parts, stale = [], []
    for path in paths:
        part = read_json(path, what="partial evaluation", hint=hint)
        models = part.get("models")
        key = (part["k"], part["seed"], None if models is None else tuple(models))
        if key not in current:
            current[key] = _evaluation_fingerprint(
                workspace, k=part["k"], seed=part["seed"], models=models
            )
        (parts if part["fingerprint"] == current[key] else stale).append((path, part))
    if not parts:
        raise WorkspaceError(
            f"{folder}: the {len(stale)} partial evaluations were computed from other "
            f"factors, split or predictions than {workspace.root} holds now; {hint}"
        )
    runs = {p["fingerprint"] + p["part"].split("/")[1] for _, p in parts}
    if len(runs) > 1:
        raise WorkspaceError(
            f"{folder}: partial evaluations of {len(runs)} different runs (other k, seed, "
            "models or n of --users i/n); delete the files of the old run and merge again"
        )
    n = UserPart.parse(parts[0][1]["part"]).count
    found = {UserPart.parse(p["part"]).index: p for _, p in parts}
    missing = [f"{i}/{n}" for i in range(1, n + 1) if i not in found]
    if missing:
        raise WorkspaceError(
            f"{folder}: parts {', '.join(missing)} are missing; run `coldtune evaluate "
            f"--users {missing[0]} --workspace W` (or copy its results/parts file here)"
        )
    ordered = [found[i] for i in range(1, n + 1)]
    first = ordered[0]
    models = [row["model"] for row in first["rows"]]
    rows = []
    for at, name in enumerate(models):
        part_rows = [part["rows"][at] for part in ordered]
        rows.append(
            {
                "model": name,
                **merge_figures(part_rows),
                "seconds": round(sum(row["seconds"] for row in part_rows), 3),
            }
        )
    results = {key: value for key, value in first.items() if key != "part"}
    results |= {
        "n_users_evaluated": sum(part["n_users_evaluated"] for part in ordered),
        "rows": rows,
        "parts": n,
    }
    write_json(workspace.results_dir / "evaluation.json", results)
    with atomic_path(workspace.results_dir / "evaluation.md") as tmp:
        tmp.write_text(results_markdown(results))
    return results


def _with_users(loaded, wmf_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, song factors): WMF's users unless the model brought its own."""
    if isinstance(loaded, tuple):
        return loaded
    return wmf_users, loaded


REFERENCE_ORDER = ["timbre ceiling", "audible ceiling"]


def _content_predictions(
    workspace: Workspace,
    interactions: Interactions,
    split: ColdStartSplit,
    *,
    root: Path | None = None,
) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """Predicted cold-song factors saved by content models (W/models/<name>/predictions.npz),
    or under `root` (W/references/<name>/, whose folder names the row: timbre-ceiling)."""
    found = []
    named = (lambda folder: folder.replace("-", " ")) if root is not None else (lambda f: f)
    root = root if root is not None else workspace.models_root
    for path in sorted(root.glob("*/predictions.npz")) if root.exists() else []:

        def load(path: Path = path) -> np.ndarray:
            with np.load(path, allow_pickle=False) as saved:
                index = IdMap(saved["song_ids"])
                wanted = interactions.song_ids[split.cold_songs]
                missing = index.missing(wanted)
                if missing:
                    raise WorkspaceError(
                        f"{path}: no prediction for {len(missing)} cold songs "
                        f"(e.g. {missing[0]!r}); predict again"
                    )
                factors = saved["factors"][index.rows(wanted)]
                if "user_factors" not in saved.files:
                    return factors
                users = saved["user_factors"]
                if len(users) != len(split.users):
                    raise WorkspaceError(
                        f"{path}: {len(users)} user factors for {len(split.users)} users "
                        "(was the split made again?); train this model again"
                    )
                return users, factors

        found.append((named(path.parent.name), load))
    return found


def results_markdown(results: dict) -> str:
    """The table of `evaluate`'s JSON: model, mAP@k, AUC, with the sizes above."""
    about = (
        f"{results['n_users_evaluated']:,} users evaluated (of {results['n_users']:,}), "
        f"{results['n_songs']:,} songs of which {results['n_cold_songs']:,} cold, "
        f"{results['factors']} factors"
        + (f", users {results['part']} only." if "part" in results else ".")
        + (f" Merged from {results['parts']} parts." if "parts" in results else "")
    )
    table = markdown_table(
        ["Model", f"mAP@{results['k']}", "AUC"],
        [[row["model"], f"{row['map']:.5f}", f"{row['auc']:.5f}"] for row in results["rows"]],
        numeric={1, 2},
    )
    return f"## {results['title']}\n\n{about}\n\n{table}"
