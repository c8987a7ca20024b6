"""`coldtune warm-up`: cold songs' factors from their first plays, the audio prediction
as a prior (cf.wmf.fold_in_songs with prior=), and how well that works.

    choose_prior_weight  the prior's weight, chosen on warm songs only: a cold-start split
                         inside the warm songs (W/warmup/validation/), WMF and the clip
                         model trained again without its held-out songs, those songs
                         warmed up from k revealed listeners -> W/warmup/prior_weight.json
    table                the warm-up table on the cold songs: audio, fold-in, audio +
                         fold-in, upper bound for k = 1, 2, 5, 10, 20 revealed listeners
                         -> W/results/warmup.json, warmup.md, warmup.png
    apply                new plays of cold songs -> their factors, written where the
                         catalogue reads the clip model's predictions

No cold song's plays ever choose the weight: `table` and `apply` only read it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from coldtune import content
from coldtune.data.ids import IdMap
from coldtune.data.plays import Interactions, load_interactions, read_plays
from coldtune.data.splits import ColdStartSplit, SplitConfig, load_split, save_split
from coldtune.errors import WorkspaceError
from coldtune.eval.seeds import estimate
from coldtune.eval.tables import markdown_table
from coldtune.eval.warmup import (
    PER_K_ROW,
    ROWS,
    WARMUP_KS,
    best_prior_weight,
    prior_weight_curve,
    warmup_figures,
)
from coldtune.steps import train as train_step
from coldtune.steps import wmf as wmf_step
from coldtune.steps.catalogue import choose_clip_model
from coldtune.steps.wmf import load_wmf
from coldtune.workspace import Workspace, atomic_path, fingerprint, read_json, write_json

# 0 (plain fold-in), half decades, inf (the audio prediction alone)
PRIOR_WEIGHTS = (0.0, *(float(10 ** (e / 2)) for e in range(-2, 11)), math.inf)


@dataclass(frozen=True)
class WarmupConfig:
    """How the warm-up is measured and its prior weight chosen; saved with the results."""

    ks: tuple[int, ...] = field(
        default=WARMUP_KS, metadata={"help": "Listeners revealed per song."}
    )
    seeds: int = field(default=5, metadata={"help": "Draws of the revealed listeners."})
    k: int = field(default=500, metadata={"help": "Cut-off of average precision."})
    weights: tuple[float, ...] = field(
        default=PRIOR_WEIGHTS, metadata={"help": "Prior weights tried on the warm songs."}
    )
    metric: str = field(default="auc", metadata={"help": "What the weight maximises."})


def _dir(workspace: Workspace) -> Path:
    return workspace.warmup_dir


def _json_weight(value: float) -> float | str:
    return "inf" if math.isinf(value) else value


def _weight(value: float | str) -> float:
    return math.inf if value == "inf" else float(value)


# ----------------------------------------------------------------------- the prior's weight


def validation_songs(split: ColdStartSplit, interactions: Interactions, song_ids) -> np.ndarray:
    """Warm columns held out to choose the weight: as many of the warm songs (with
    features, `song_ids`) as the split holds out of all songs, drawn with its seed."""
    have = set(map(str, song_ids))
    warm = np.array([c for c in split.warm_songs if str(interactions.song_ids[c]) in have])
    share = len(split.cold_songs) / (len(split.warm_songs) + len(split.cold_songs))
    n = max(1, int(round(share * len(warm))))
    by_id = warm[np.argsort(interactions.song_ids[warm].astype(str), kind="stable")]
    rng = np.random.default_rng([split.config.seed, 15])
    return np.sort(rng.choice(by_id, size=n, replace=False))


def _clip_model(workspace: Workspace, model: str | None):
    """(folder name, registered name, config) of the clip model."""
    name = choose_clip_model(workspace, model)
    folder = workspace.models_dir(name)
    registered = content.saved_model_name(folder)
    saved = read_json(folder / "config.json", what="model config", hint="train it again")
    config = content.spec(registered).config.from_dict(saved["config"])
    return name, registered, config


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.is_symlink() and link.resolve() == target.resolve():
            return
        raise WorkspaceError(f"{link}: in the way of a link to {target}; delete it")
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target, link.parent), link)


def validation_workspace(
    workspace: Workspace,
    *,
    model: str | None = None,
    device: str | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> tuple[Workspace, str]:
    """W/warmup/validation/: the cold-start protocol inside the warm songs, and the clip
    model's row there. Its cold songs are warm songs of W (`validation_songs`); its
    WMF (W's settings) and clip model (W's model's config) are trained again without
    them, so their predictions are for songs the model never learnt from. W's cold songs
    are in neither. Built once per split, WMF and model config (W/warmup/validation/
    key.json); plays and features are links to W's."""
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    name, registered, config = _clip_model(workspace, model)
    row = content.spec(registered).row(config)
    inner = Workspace(_dir(workspace) / "validation")
    songs_with_audio = train_step.training_set(workspace).training.song_ids
    held = validation_songs(split, interactions, songs_with_audio)
    key = fingerprint(
        [workspace.split_path, workspace.wmf_dir / "config.json"],
        root=workspace.root,
        arrays=(interactions.song_ids[held],),
        model=registered,
        config=config.to_dict(),
    )
    key_path = inner.root / "key.json"
    predictions = inner.models_dir(row) / "predictions.npz"
    if key_path.exists() and read_json(key_path, what="", hint="")["key"] == key:
        if predictions.exists():
            return inner, row
    _link(workspace.plays_dir, inner.plays_dir)
    _link(workspace.features_dir, inner.features_dir)
    inner_split = ColdStartSplit(
        split.users,
        np.setdiff1d(split.warm_songs, held),
        held,
        SplitConfig(n_cold_songs=len(held), seed=split.config.seed),
    )
    save_split(inner_split, interactions, inner)
    wmf_config = load_wmf(workspace).config
    if on_stage is not None:
        on_stage(f"validation: WMF on {len(inner_split.warm_songs):,} warm songs")
    wmf_step.fit(inner, wmf_config, device=device)
    if on_stage is not None:
        on_stage(f"validation: {row} without the {len(held):,} validation songs")
    train_step.run(inner, registered, config=config)
    write_json(key_path, {"key": key, "model": name, "validation_songs": len(held)})
    return inner, row


def weights_for(chosen: dict, listeners: np.ndarray, *, per_k: bool = True) -> np.ndarray:
    """The prior weight of songs with `listeners` [shape=(n,)] warm-up listeners each:
    with `per_k`, the weight chosen for the largest validated k <= listeners (the
    smallest k's below it; k = 0 is not a choice), else the one weight."""
    listeners = np.asarray(listeners)
    single = np.full(len(listeners), _weight(chosen["prior_weight"]))
    by_k = {int(k): _weight(w) for k, w in (chosen.get("best_per_k") or {}).items() if int(k) > 0}
    if not per_k or not by_k:
        return single
    ks = np.array(sorted(by_k))
    at = np.clip(np.searchsorted(ks, listeners, side="right") - 1, 0, len(ks) - 1)
    return np.array([by_k[int(k)] for k in ks[at]])


def _predictions(path: Path, wanted: np.ndarray) -> np.ndarray:
    with np.load(path, allow_pickle=False) as saved:
        index = IdMap(saved["song_ids"])
        missing = index.missing(wanted)
        if missing:
            raise WorkspaceError(
                f"{path}: no prediction for {len(missing)} songs (e.g. {missing[0]!r}); "
                "train the model again"
            )
        if "user_factors" in saved.files:
            raise WorkspaceError(
                f"{path}: this model scores with users of its own (mlr), so its factors "
                "are no prior for WMF's; choose another with --model"
            )
        return saved["factors"][index.rows(wanted)].astype(np.float32)


def choose_prior_weight(
    workspace: Workspace,
    config: WarmupConfig = WarmupConfig(),
    *,
    model: str | None = None,
    device: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """`coldtune warm-up choose`: the prior weight that maximises the warm-up's mean
    `config.metric` over k in `config.ks` and the draws, on the validation songs of
    `validation_workspace` (warm songs only). Writes W/warmup/prior_weight.json."""
    start = time.perf_counter()
    inner, row = validation_workspace(workspace, model=model, device=device, on_stage=on_stage)
    interactions = load_interactions(inner)
    split = load_split(inner, interactions)
    wmf = load_wmf(inner, split=split)
    wmf.device = device
    plays = split.cold_plays(interactions.matrix)
    prior = _predictions(
        inner.models_dir(row) / "predictions.npz", interactions.song_ids[split.cold_songs]
    )
    if on_stage is not None:
        on_stage(f"validation: {len(config.weights)} prior weights on {plays.shape[1]:,} songs")
    seeds = list(range(config.seeds))
    curve = prior_weight_curve(
        wmf,
        prior,
        plays,
        weights=config.weights,
        ks=config.ks,
        seeds=seeds,
        k_map=config.k,
        device=device,
        on_progress=None if on_progress is None else lambda d, t: on_progress("validation", d, t),
    )
    best = best_prior_weight(curve, metric=config.metric)
    rows = []
    for weight, by_k in curve.items():
        # per draw, the mean over k; then mean ± SE over the draws
        per_seed = {m: [np.mean([by_k[k][s][m] for k in config.ks]) for s in seeds] for m in (0, 1)}
        overall = {name: estimate(per_seed[m]) for name, m in (("map", 0), ("auc", 1))}
        rows.append(
            {
                "prior_weight": _json_weight(weight),
                **{f"{n}": v.mean for n, v in overall.items()},
                **{f"{n}_se": v.se for n, v in overall.items()},
                "per_k": {
                    str(k): {
                        "map": float(np.mean([by_k[k][s][0] for s in seeds])),
                        "auc": float(np.mean([by_k[k][s][1] for s in seeds])),
                    }
                    for k in config.ks
                },
            }
        )
    at = 0 if config.metric == "map" else 1
    best_per_k = {
        str(k): _json_weight(
            max(curve, key=lambda w, k=k: (np.mean([curve[w][k][s][at] for s in seeds]), -w))
        )
        for k in config.ks
    }
    result = {
        "prior_weight": _json_weight(best),
        "best_per_k": best_per_k,
        "metric": config.metric,
        "model": read_json(inner.root / "key.json", what="", hint="")["model"],
        "validation_songs": int(plays.shape[1]),
        "validation_listeners": int(plays.nnz),
        "config": _config_dict(config),
        "rows": rows,
        "key": _weight_key(workspace, model=model),
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json(_dir(workspace) / "prior_weight.json", result)
    return result


def _config_dict(config: WarmupConfig) -> dict:
    out = asdict(config)
    out["weights"] = [_json_weight(w) for w in config.weights]
    return out


def _weight_key(workspace: Workspace, *, model: str | None) -> str:
    name = choose_clip_model(workspace, model)
    paths = [workspace.split_path, workspace.wmf_dir / "factors.npz"]
    paths.append(workspace.models_dir(name) / "config.json")
    return fingerprint(paths, root=workspace.root, model=name)


def load_prior_weight(workspace: Workspace, *, model: str | None = None) -> dict:
    """W/warmup/prior_weight.json, checked to belong to the workspace's split, WMF and
    clip model (`model`, default: the catalogue's)."""
    path = _dir(workspace) / "prior_weight.json"
    hint = "choose it on the warm songs with `coldtune warm-up choose -w W`"
    chosen = read_json(path, what="the warm-up's prior weight", hint=hint)
    if chosen.get("key") != _weight_key(workspace, model=model):
        raise WorkspaceError(
            f"{path}: chosen for another split, WMF or clip model than the workspace's "
            f"now (it was chosen for {chosen.get('model')}); {hint}"
        )
    return chosen


def prior_weight_markdown(chosen: dict) -> str:
    """The validation curve: mean over k and draws of each weight, ± SE over draws."""
    rows = [
        [
            str(row["prior_weight"])
            + (" (chosen)" if row["prior_weight"] == chosen["prior_weight"] else ""),
            f"{row['map']:.4f} ± {row['map_se']:.4f}",
            f"{row['auc']:.4f} ± {row['auc_se']:.4f}",
        ]
        for row in chosen["rows"]
    ]
    config = chosen["config"]
    about = (
        f"Prior weight of the warm-up, chosen by mean {chosen['metric'].upper()} on "
        f"{chosen['validation_songs']:,} warm songs held out of WMF and of {chosen['model']} "
        f"(never on cold songs): k = {', '.join(map(str, config['ks']))} revealed "
        f"listeners, {config['seeds']} draws; mean over k, ± SE over the draws."
    )
    table = markdown_table(["Prior weight", f"mAP@{config['k']}", "AUC"], rows, numeric={1, 2})
    return f"{about}\n\n{table}"


# ----------------------------------------------------------------------- the warm-up table


def table(
    workspace: Workspace,
    config: WarmupConfig = WarmupConfig(),
    *,
    model: str | None = None,
    device: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """`coldtune warm-up table`: eval.warmup's four rows for each k on the cold songs,
    mean ± SE over `config.seeds` draws of the revealed listeners, the prior from the
    clip model's predictions (its row of `coldtune evaluate`) and the weight of
    `load_prior_weight` (chosen first, on warm songs, when there is none).
    Writes W/results/warmup.json, warmup.md and warmup.png (the warm-up curve)."""
    start = time.perf_counter()
    try:
        chosen = load_prior_weight(workspace, model=model)
    except WorkspaceError:
        chosen = choose_prior_weight(
            workspace, config, model=model, device=device, on_stage=on_stage,
            on_progress=on_progress,
        )  # fmt: skip
    name = choose_clip_model(workspace, model)
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    wmf = load_wmf(workspace, split=split)
    wmf.device = device
    plays = split.cold_plays(interactions.matrix)
    prior = _predictions(
        workspace.models_dir(name) / "predictions.npz", interactions.song_ids[split.cold_songs]
    )
    weight = _weight(chosen["prior_weight"])
    per_k = {int(k): _weight(w) for k, w in chosen.get("best_per_k", {}).items()}
    rows = [*ROWS, PER_K_ROW] if all(k in per_k or k == 0 for k in config.ks) else list(ROWS)
    per_k.setdefault(0, weight)  # nothing revealed: any weight gives the prior
    if on_stage is not None:
        on_stage(f"warm-up of {plays.shape[1]:,} cold songs, prior weight {weight:g}")
    seeds = list(range(config.seeds))
    figures = warmup_figures(
        wmf,
        prior,
        plays,
        prior_weight=weight,
        prior_weight_per_k=per_k if PER_K_ROW in rows else None,
        rows=rows,
        ks=config.ks,
        seeds=seeds,
        k_map=config.k,
        device=device,
        on_progress=None if on_progress is None else lambda d, t: on_progress("warm-up", d, t),
    )
    table_rows: dict[str, dict] = {}
    for k, by_seed in figures.items():
        summary = {}
        for row in rows:
            values = [by_seed[s][row] for s in seeds]
            summary[row] = {
                "map": estimate([v[0] for v in values]).__dict__,
                "auc": estimate([v[1] for v in values]).__dict__,
            }
        draws = [by_seed[s]["_draw"] for s in seeds]
        table_rows[str(k)] = {
            "rows": summary,
            "per_seed": {str(s): {r: list(by_seed[s][r]) for r in rows} for s in seeds},
            "n_users": float(np.mean([d["n_users"] for d in draws])),
            "n_capped": draws[0]["n_capped"],
            "mean_revealed": float(np.mean([d["mean_revealed"] for d in draws])),
            "at_least_best": at_least_best(summary),
        }
    results = {
        "title": "Warm-up: cold songs from their first plays",
        "model": name,
        "prior_weight": chosen["prior_weight"],
        "prior_weight_per_k": chosen.get("best_per_k"),
        "prior_weight_chosen_on": f"{chosen['validation_songs']} warm validation songs",
        "rows": rows,
        "k": config.k,
        "ks": list(config.ks),
        "seeds": seeds,
        "split_seed": split.config.seed,
        "n_cold_songs": len(split.cold_songs),
        "n_users": len(split.users),
        "factors": wmf.factors,
        "per_k": table_rows,
        "inputs": table_key(workspace, name),
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json(workspace.results_dir / "warmup.json", results)
    with atomic_path(workspace.results_dir / "warmup.md") as tmp:
        tmp.write_text(table_markdown(results))
    plot_warmup(results, workspace.results_dir / "warmup.png")
    return results


def at_least_best(summary: dict) -> dict:
    """For each blended row of one k: whether its mean mAP and AUC are at least the
    better of audio's and fold-in's (the issue's expectation)."""
    return {
        row: {
            m: bool(
                summary[row][m]["mean"]
                >= max(summary["audio"][m]["mean"], summary["fold-in"][m]["mean"])
            )
            for m in ("map", "auc")
        }
        for row in ("audio + fold-in", PER_K_ROW)
        if row in summary
    }


def table_key(workspace: Workspace, model: str) -> str:
    """What the warm-up table depends on: split, WMF, the clip model's predictions and
    the chosen weight."""
    paths = [workspace.split_path, workspace.wmf_dir / "factors.npz"]
    paths += [
        workspace.models_dir(model) / "predictions.npz",
        _dir(workspace) / "prior_weight.json",
    ]
    return fingerprint(paths, root=workspace.root, model=model)


def is_current(workspace: Workspace, results: dict) -> bool:
    """Whether W/results/warmup.json's `results` were made from the workspace as it is."""
    return results.get("inputs") == table_key(workspace, results["model"])


def table_markdown(results: dict) -> str:
    """The warm-up table: mean ± SE over the draws per k and row."""
    rows = []
    names = results.get("rows", ROWS)
    for k, entry in results["per_k"].items():
        for row in names:
            figures = entry["rows"][row]
            cells = [f"{figures[m]['mean']:.4f} ± {figures[m]['se']:.4f}" for m in ("map", "auc")]
            rows.append([k if row == names[0] else "", row, *cells])
    table_text = markdown_table(
        ["k revealed", "Factors", f"mAP@{results['k']}", "AUC"], rows, numeric={2, 3}
    )
    capped = ", ".join(
        f"k={k}: {e['n_capped']:g} ({e['mean_revealed']:.1f} revealed per song)"
        for k, e in results["per_k"].items()
    )
    verdicts = []
    for row in next(iter(results["per_k"].values()))["at_least_best"]:
        for m in ("map", "auc"):
            below = [k for k, e in results["per_k"].items() if not e["at_least_best"][row][m]]
            verdicts.append(
                f"{row} >= max(audio, fold-in) in {m.upper()} at every k."
                if not below
                else f"{row} is below max(audio, fold-in) in {m.upper()} at k = {', '.join(below)}."
            )
    verdict = " ".join(verdicts)
    spread = (
        f"mean ± SE over {len(results['seeds'])} splits, each the mean of "
        f"{results['draws']} draws of them"
        if "draws" in results
        else f"mean ± SE over {len(results['seeds'])} draws of them"
    )
    splits = "split seeds" if "draws" in results else "split seed"
    about = (
        f"{results['n_cold_songs']:,} cold songs, {results['n_users']:,} users, "
        f"{results['factors']} factors, {splits} {results['split_seed']}; clip model "
        f"{results['model']}, prior weight {results['prior_weight']} (chosen on "
        f"{results['prior_weight_chosen_on']}). Each k reveals min(k, n - 1) of a song's n "
        f"listeners; {spread}. Songs with fewer than k + 1 listeners: {capped}. {verdict}"
    )
    return f"## {results['title']}\n\n{about}\n\n{table_text}"


def across_splits(workspaces: list[Workspace]) -> dict:
    """The warm-up tables of several workspaces (one per split seed, the same world and
    settings) as one: per k and row, mean ± SE over the splits of each split's mean
    over its draws. Reads each W/results/warmup.json; returns a dict shaped as `table`'s
    (its per_seed keyed by split seed), which `table_markdown` renders."""
    tables = [
        read_json(
            w.results_dir / "warmup.json",
            what="the warm-up table",
            hint="run `coldtune warm-up table -w W` in that workspace first",
        )
        for w in workspaces
    ]
    if len(tables) < 2:
        raise WorkspaceError("give two or more workspaces, one per split seed")
    ks = tables[0]["ks"]
    for w, t in zip(workspaces, tables, strict=True):
        if t["ks"] != ks or t["k"] != tables[0]["k"]:
            raise WorkspaceError(
                f"{w.root}: its warm-up table has k = {t['ks']} (mAP@{t['k']}), the first "
                f"{ks} (mAP@{tables[0]['k']}); make them with the same settings"
            )
    names = [
        r for r in tables[0].get("rows", ROWS) if all(r in t.get("rows", ROWS) for t in tables)
    ]
    per_k = {}
    for k in map(str, ks):
        summary = {
            row: {
                m: estimate([t["per_k"][k]["rows"][row][m]["mean"] for t in tables]).__dict__
                for m in ("map", "auc")
            }
            for row in names
        }
        per_k[k] = {
            "rows": summary,
            "per_seed": {
                str(t["split_seed"]): {
                    r: [t["per_k"][k]["rows"][r][m]["mean"] for m in ("map", "auc")] for r in names
                }
                for t in tables
            },
            "n_capped": float(np.mean([t["per_k"][k]["n_capped"] for t in tables])),
            "mean_revealed": float(np.mean([t["per_k"][k]["mean_revealed"] for t in tables])),
            "at_least_best": at_least_best(summary),
        }
    first = tables[0]
    return first | {
        "title": f"Warm-up over {len(tables)} splits",
        "prior_weight": ", ".join(str(t["prior_weight"]) for t in tables),
        "prior_weight_chosen_on": "each split's warm validation songs",
        "split_seed": ", ".join(str(t["split_seed"]) for t in tables),
        "seeds": [t["split_seed"] for t in tables],
        "draws": len(first["seeds"]),
        "per_k": per_k,
        "rows": names,
    }


def plot_warmup(results: dict, path: Path) -> Path:
    """The warm-up curve: mAP and AUC against k revealed listeners, one line per row,
    error bars of ± 1 SE over the draws. PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [int(k) for k in results["per_k"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = {
        "audio": "o-",
        "fold-in": "s-",
        "audio + fold-in": "D-",
        PER_K_ROW: "v:",
        "upper bound": "k--",
    }
    for ax, metric, label in zip(axes, ("map", "auc"), (f"mAP@{results['k']}", "AUC"), strict=True):
        for row in results.get("rows", ROWS):
            means = [results["per_k"][str(k)]["rows"][row][metric]["mean"] for k in ks]
            errors = [results["per_k"][str(k)]["rows"][row][metric]["se"] for k in ks]
            errors = [0.0 if e is None or math.isnan(e) else e for e in errors]
            ax.errorbar(ks, means, yerr=errors, fmt=styles[row], label=row, capsize=3, ms=4)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("listeners revealed per cold song (k)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Warm-up of {results['n_cold_songs']:,} cold songs ({results['model']})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------- first plays arrive


def apply(
    workspace: Workspace,
    plays_file: str | os.PathLike | None = None,
    *,
    model: str | None = None,
    per_k: bool = True,
    device: str | None = None,
    read_options: dict | None = None,
) -> dict:
    """`coldtune warm-up apply FILE`: new plays of cold songs warm up their factors.

    The plays (user, song, count) of known users on the workspace's cold songs and new
    releases (`coldtune add`) are added to W/warmup/plays.npz (a file applied before is
    not added twice: its content hash is kept), and every such song with warm-up plays
    gets the prior fold-in from all of them, with the clip model's prediction as prior
    and the chosen weight (`load_prior_weight`; with `per_k`, the weight chosen for its
    number of listeners, `weights_for`). Plays of unknown users, unknown songs and warm
    songs are counted, not used (warm songs' factors are WMF's; a new user is folded in
    by `recommend --plays`). The factors go to W/warmup/factors.npz, atomically;
    `load_catalogue` reads both files, so `similar`, `recommend` and the service use the
    warmed factors and never recommend a song to a user who played it, when they next
    load. Runs hold the workspace's "warmup" lock: two at once both land.
    Without FILE, the kept plays are applied again (after a new clip model or weight).
    """
    from coldtune.steps.catalogue import catalogue_predictions, load_clip_model, read_releases

    folder = _dir(workspace)
    chosen = load_prior_weight(workspace, model=model)
    name = choose_clip_model(workspace, model)
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    wmf = load_wmf(workspace, split=split)
    wmf.device = device
    user_map = IdMap(interactions.user_ids[split.users])
    cold_ids = np.asarray(interactions.song_ids[split.cold_songs], dtype=str)
    releases = [row["song_id"] for row in read_releases(workspace)]
    cold_ids = np.concatenate([cold_ids, np.setdiff1d(releases, cold_ids)]).astype(str)
    cold_map = IdMap(cold_ids)
    warm_ids = set(map(str, interactions.song_ids[split.warm_songs]))

    kept_path = folder / "plays.npz"
    with workspace.lock("warmup"):
        applied: list[str] = []
        users = np.zeros(0, dtype=np.int64)
        songs = np.zeros(0, dtype=np.int64)
        counts = np.zeros(0, dtype=np.float64)
        if kept_path.exists():
            with np.load(kept_path, allow_pickle=False) as kept:
                users = user_map.rows(kept["user_ids"].tolist())
                songs = cold_map.rows(kept["song_ids"].tolist())
                counts = kept["counts"].astype(np.float64)
                applied = kept["applied"].tolist()
        report = {"file": None, "rows": 0, "used": 0, "already_applied": False}
        rejected = {"unknown user": 0, "unknown song": 0, "warm song": 0}
        if plays_file is not None:
            file_key = fingerprint([plays_file])
            report["file"] = str(plays_file)
            if file_key in applied:
                report["already_applied"] = True
            else:
                new = read_plays(plays_file, **(read_options or {}))
                coo = new.matrix.tocoo()
                new_users = np.asarray(new.user_ids, dtype=str)[coo.row]
                new_songs = np.asarray(new.song_ids, dtype=str)[coo.col]
                known_user = np.array([u in user_map for u in new_users], dtype=bool)
                cold = np.array([s in cold_map for s in new_songs], dtype=bool)
                warm = np.array([s in warm_ids for s in new_songs], dtype=bool)
                rejected["unknown user"] = int(np.sum(~known_user))
                rejected["warm song"] = int(np.sum(known_user & warm))
                rejected["unknown song"] = int(np.sum(known_user & ~cold & ~warm))
                use = known_user & cold
                users = np.concatenate([users, user_map.rows(new_users[use].tolist())])
                songs = np.concatenate([songs, cold_map.rows(new_songs[use].tolist())])
                counts = np.concatenate([counts, coo.data[use].astype(np.float64)])
                applied.append(file_key)
                report["rows"] = int(coo.nnz)
                report["used"] = int(use.sum())
        report["rejected"] = rejected

        matrix = sp.csr_matrix(
            (counts, (users, songs)), shape=(len(split.users), len(cold_ids))
        )  # repeated (user, song) pairs sum
        matrix.sum_duplicates()
        listeners = np.diff(matrix.tocsc().indptr)
        warmed = np.flatnonzero(listeners > 0)
        listeners = listeners[warmed]
        # the prior: the clip model's prediction, as the catalogue has it
        prior = (
            catalogue_predictions(workspace, load_clip_model(workspace, name), cold_ids[warmed])
            if len(warmed)
            else np.zeros((0, wmf.song_factors_.shape[1]), np.float32)
        )
        if np.isnan(prior).any():
            missing = cold_ids[warmed][np.isnan(prior).any(1)]
            raise WorkspaceError(
                f"{len(missing)} cold songs with warm-up plays have no audio features "
                f"(first: {missing[0]}); extract their clips (coldtune audio extract)"
            )
        weights = weights_for(chosen, listeners, per_k=per_k)
        factors = np.zeros_like(prior)
        for w in np.unique(weights):  # one solve per distinct weight
            at = np.flatnonzero(weights == w)
            factors[at] = wmf.fold_in_songs(matrix[:, warmed[at]], prior=prior[at], prior_weight=w)
        coo = matrix.tocoo()
        with atomic_path(kept_path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                user_ids=np.asarray(user_map.ids[coo.row], dtype=str),
                song_ids=cold_ids[coo.col],
                counts=coo.data,
                applied=np.asarray(applied, dtype=str),
            )
        with atomic_path(folder / "factors.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                song_ids=cold_ids[warmed],
                factors=factors,
                prior=prior,
                listeners=listeners,
                prior_weight=weights,
                model=np.array(name),
            )
    return report | {
        "songs_warmed": int(len(warmed)),
        "plays_kept": int(matrix.nnz),
        "prior_weight": chosen["best_per_k"] if per_k else chosen["prior_weight"],
        "model": name,
        "factors": str(folder / "factors.npz"),
    }
