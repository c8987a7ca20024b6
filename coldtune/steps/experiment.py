"""`coldtune experiment`: the protocol of section 5.2 end to end, and Table 2's layout.

From a workspace with play counts (and, for the audio models, a feature store; for the
metadata row, tags): split -> WMF on the warm songs -> every content model -> the
evaluation of every row -> W/results/experiment.json and experiment.md, with the time
each stage took. Settings come from a preset (EXPERIMENTS) and are saved beside the
results, so a table always says how it was made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

from coldtune import content
from coldtune.cf.wmf import WMFConfig
from coldtune.data.splits import SPLIT_PRESETS, SplitConfig
from coldtune.errors import ParameterError
from coldtune.eval.tables import markdown_table
from coldtune.steps import evaluate as evaluate_step
from coldtune.steps import plays as plays_step
from coldtune.steps import train as train_step
from coldtune.steps import wmf as wmf_step
from coldtune.workspace import Workspace, atomic_path, write_json


@dataclass(frozen=True)
class ModelRun:
    """One row of the table: a registered content model and its options."""

    model: str
    options: tuple[tuple[str, object], ...] = ()

    def config(self, **defaults):
        """The model's config: the registry's defaults, then `defaults`, then the run's."""
        spec = content.spec(self.model)
        accepted = spec.options()
        given = {k: v for k, v in defaults.items() if k in accepted} | dict(self.options)
        return content.make_config(self.model, **given)

    @property
    def row(self) -> str:
        """The row's name in the results (the registry's: bow-mlp-wpe, cnn-paper-mse)."""
        return content.spec(self.model).row(self.config())

    @property
    def label(self) -> str:
        """The paper's name of the row."""
        return content.spec(self.model).row_label(self.config())


@dataclass(frozen=True)
class ExperimentConfig:
    split: SplitConfig
    wmf: WMFConfig
    models: tuple[ModelRun, ...]
    # the bag-of-words codebook of every BoW model; None: min(max_words, warm songs / 2),
    # for catalogues far smaller than the paper's 9,330 songs
    words: int | None = 4000
    max_words: int = 1000
    k: int = 500  # mAP@k

    def to_dict(self) -> dict:
        return asdict(self)


def _table2_models(**cnn) -> tuple[ModelRun, ...]:
    """The rows of Table 2 (plus metadata, section 1.1's reference, where tags exist)."""
    return (
        ModelRun("bow-linear"),
        ModelRun("bow-mlp", (("objective", "mse"),)),
        ModelRun("bow-mlp", (("objective", "wpe"),)),
        ModelRun("mlr"),
        ModelRun("cnn", (("objective", "mse"), *cnn.items())),
        ModelRun("cnn", (("objective", "wpe"), *cnn.items())),
        ModelRun("metadata"),
    )


EXPERIMENTS: dict[str, ExperimentConfig] = {
    # the demo catalogue: 2,000 songs, so fewer words and a short CNN schedule
    "demo": ExperimentConfig(
        split=SplitConfig(cold_fraction=0.2),
        wmf=WMFConfig(factors=50),
        models=_table2_models(max_epochs=20, patience=5),
        words=None,
    ),
    # Table 2: 9,330 most popular songs, 20,000 users, 1,881 cold songs, 50 factors
    "paper-subset": ExperimentConfig(
        split=SPLIT_PRESETS["paper-subset"], wmf=WMFConfig(factors=50), models=_table2_models()
    ),
    # Table 3: every song with a clip, every user, 46,728 cold songs, 400 factors
    "paper-full": ExperimentConfig(
        split=SPLIT_PRESETS["paper-full"], wmf=WMFConfig(factors=400), models=_table2_models()
    ),
}


def experiment_config(preset: str, *, seed: int = 0, backend: str | None = None):
    if preset not in EXPERIMENTS:
        raise ParameterError(f"preset must be one of {', '.join(EXPERIMENTS)}, got {preset!r}")
    config = EXPERIMENTS[preset]
    wmf = replace(config.wmf, seed=seed, **({"backend": backend} if backend else {}))
    return replace(config, split=replace(config.split, seed=seed), wmf=wmf)


@dataclass
class Stages:
    """Times each stage and tells `on_stage` when one starts and ends."""

    on_stage: Callable[[str, str], None] = lambda _event, _name: None
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.on_stage("start", name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 2)
        self.on_stage("done", name)


def run_experiment(
    workspace: Workspace,
    config: ExperimentConfig,
    *,
    stages: Stages | None = None,
    on_note: Callable[[str], None] = lambda _message: None,
) -> dict:
    """Split, WMF, every model that the workspace has data for, evaluation, the table."""
    stages = stages or Stages()
    with stages("split"):
        split = plays_step.split(workspace, config.split)
    on_note(
        f"{len(split.users):,} users, {len(split.warm_songs):,} warm and "
        f"{len(split.cold_songs):,} cold songs"
    )
    with stages(f"WMF, {config.wmf.factors} factors ({config.wmf.backend})"):
        fitted = wmf_step.fit(workspace, config.wmf)
    on_note(f"objective {fitted.model.objective_[0]:.6g} -> {fitted.model.objective_[-1]:.6g}")

    has_audio = (workspace.features_dir / "config.json").exists()
    has_tags = workspace.tags_path.exists()
    words = config.words or int(min(config.max_words, max(16, len(split.warm_songs) // 2)))
    rows, skipped = [], []
    for run in config.models:
        reads = content.spec(run.model).reads
        if reads == "tags" and not has_tags:
            skipped.append((run.row, "no tags in the workspace (coldtune tags ingest)"))
            continue
        if reads != "tags" and not has_audio:
            skipped.append((run.row, "no feature store (coldtune audio extract)"))
            continue
        # every bag-of-words model shares one codebook size (and so one cached codebook)
        model_config = run.config(words=words)
        with stages(f"{run.row}: {run.label}"):
            report = train_step.run(workspace, run.model, model_config)
        on_note(_describe(report))
        rows.append(run.row)
    for row, why in skipped:
        on_note(f"skipped {row}: {why}")
    with stages("evaluate"):
        results = evaluate_step.evaluate(workspace, k=config.k, models=rows)
    # Table 2's order: random, the models as the preset lists them, the upper bound
    order = {name: i for i, name in enumerate(["random", *rows, "upper bound"])}
    results["rows"].sort(key=lambda row: order.get(row["model"], len(order)))
    labels = {run.row: run.label for run in config.models}
    results["labels"] = {row["model"]: labels.get(row["model"], "") for row in results["rows"]}
    results["skipped"] = [{"model": row, "why": why} for row, why in skipped]
    results["stages"] = dict(stages.seconds)
    results["config"] = config.to_dict()
    folder = workspace.results_dir
    write_json(folder / "experiment.json", results)
    with atomic_path(folder / "experiment.md") as tmp:
        tmp.write_text(experiment_markdown(results))
    return results


def _describe(report: dict) -> str:
    parts = []
    if "epochs" in report:
        parts.append(f"{report['epochs']} epochs, best {report['best_epoch']}")
    if "pca_components" in report:
        parts.append(f"{report['pca_components']} PCA components")
    if "windows_per_s" in report:
        parts.append(f"{report['windows_per_s']:.0f} windows/s")
    if "tags" in report:
        parts.append(f"{report['tags']} tags")
    return ", ".join(parts) or "trained"


PAPER_LABELS = {"random": "random", "upper bound": "upper bound (WMF on the cold songs' plays)"}


def experiment_markdown(results: dict) -> str:
    """Table 2's layout: model, mAP@k, AUC; the sizes above, stage times below."""
    labels = {**PAPER_LABELS, **results.get("labels", {})}
    rows = [
        [row["model"], labels.get(row["model"], ""), f"{row['map']:.5f}", f"{row['auc']:.5f}"]
        for row in results["rows"]
    ]
    rows += [[s["model"], f"not run: {s['why']}", "", ""] for s in results.get("skipped", [])]
    text = (
        f"## {results['title']}\n\n"
        f"{results['n_users_evaluated']:,} users evaluated (of {results['n_users']:,}), "
        f"{results['n_songs']:,} songs of which {results['n_cold_songs']:,} cold, "
        f"{results['factors']} factors.\n\n"
        + markdown_table(["Model", "", f"mAP@{results['k']}", "AUC"], rows, numeric={2, 3})
    )
    if results.get("stages"):
        stage_rows = [[name, f"{seconds:.1f}"] for name, seconds in results["stages"].items()]
        text += "\n" + markdown_table(["Stage", "Seconds"], stage_rows, numeric={1})
    return text
