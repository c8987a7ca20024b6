"""One training loop for every torch content model (section 4.3).

AdamW or SGD with Nesterov momentum, a validation split of the warm songs, early stopping
on the validation loss (the best epoch's weights are kept), a checkpoint after every
epoch with everything needed to resume the very same run (weights, optimiser, random
generators, history), progress with items/s and loss, fixed seeds. CUDA when present.
Under torchrun, DistributedDataParallel over the processes (coldtune/models/distributed.py).

A model supplies two functions: `make_batch(rows, rng)` -> the model's input for those
training items, and `objective(predicted, rows)` -> the loss; the loop does the rest.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from coldtune.content.distributed import Distributed, current
from coldtune.content.validation import split_rows
from coldtune.errors import ParameterError
from coldtune.workspace import atomic_path


def _adamw(params, config: TrainConfig):
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def _sgd_nesterov(params, config: TrainConfig):
    return torch.optim.SGD(
        params,
        lr=config.learning_rate,
        momentum=config.momentum,
        nesterov=True,
        weight_decay=config.weight_decay,
    )


OPTIMIZERS: dict[str, Callable] = {"adamw": _adamw, "sgd-nesterov": _sgd_nesterov}

# The arithmetic of the forward pass. bf16 autocasts matrix products and convolutions to
# bfloat16 (weights and optimiser stay float32); on CPUs with AVX512-BF16 or AMX that is
# faster, elsewhere it can be slower: docs/benchmarks.md has the figures.
PRECISIONS: dict[str, Callable[[torch.device], contextlib.AbstractContextManager]] = {
    "fp32": lambda device: contextlib.nullcontext(),
    "bf16": lambda device: torch.autocast(device.type, dtype=torch.bfloat16),
}


def auto_precision() -> str:
    """bf16 where the hardware computes it natively (a GPU with bfloat16, a CPU with
    AVX512-BF16 or AMX through oneDNN), fp32 elsewhere. On the 2-core EPYC of
    docs/benchmarks.md bf16 trained the paper's CNN 1.5x faster to the same cold-start
    mAP and AUC (docs/models.md)."""
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adamw"  # a name in OPTIMIZERS
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd-nesterov
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 10  # epochs without a better validation loss before stopping
    validation_fraction: float = 0.1
    precision: str = "fp32"  # a name in PRECISIONS
    # Polyak averaging: validate, keep and return an exponential moving average of the
    # weights, this much of the average kept at each step (0: the weights themselves)
    average: float = 0.0
    seed: int = 0

    def validate(self) -> TrainConfig:
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.precision not in PRECISIONS:
            raise ParameterError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 < self.validation_fraction < 1:
            raise ParameterError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            )
        if not self.learning_rate > 0:
            raise ParameterError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0 <= self.average < 1:
            raise ParameterError(f"average must be in [0, 1), got {self.average!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


Progress = Callable[[dict], None]  # {"epoch", "train_loss", "validation_loss", "items_per_s"}


@dataclass
class TrainResult:
    history: list[dict]
    best_epoch: int
    best_validation_loss: float  # the criterion's best: the loss, or minus the score
    resumed_from_epoch: int
    validation_rows: np.ndarray | None = None


def train_loop(
    model: torch.nn.Module,
    *,
    n_items: int,
    make_batch: Callable[[np.ndarray, np.random.Generator], torch.Tensor],
    objective: Callable[[torch.Tensor, np.ndarray], torch.Tensor],
    config: TrainConfig,
    checkpoint: str | Path | None = None,
    identity: dict | None = None,
    device: torch.device | str | None = None,
    on_epoch: Progress | None = None,
    score: Callable[[np.ndarray], float] | None = None,
) -> TrainResult:
    """Train `model` on items 0..n_items-1; returns with the best epoch's weights loaded.

    checkpoint : file written after every epoch; if it exists and was written for the
        same `identity` (the model's and data's settings) and config, training resumes
        from it. identity : anything that must match for a resume to be valid.
    score : score(validation_rows) -> a figure where higher is better (a ranking metric
        of the validation songs, coldtune.content.validation), computed after every
        epoch with the model in eval mode; when given, it and not the validation loss
        chooses the epoch kept and when to stop.
    """
    config = config.validate()
    ddp = current()  # one process, or this one's place among torchrun's processes
    device = ddp.device(device)
    model.to(device)
    net = ddp.wrap(model, device)  # runs forward and backward; the weights stay model's
    val_rows, train_rows = split_rows(
        n_items, fraction=config.validation_fraction, seed=config.seed
    )

    torch.manual_seed(config.seed)
    optimizer = OPTIMIZERS[config.optimizer](model.parameters(), config)
    rng = np.random.default_rng([config.seed, 1])
    state = {"epoch": 0, "best": float("inf"), "best_epoch": 0, "bad_epochs": 0, "history": []}
    best_weights = _copy(model)
    average = _WeightAverage(model, config.average) if config.average > 0 else None
    stamp = {"config": config.to_dict(), "identity": identity or {}}
    resumed = 0
    if checkpoint is not None and Path(checkpoint).exists():
        saved = _read_checkpoint(checkpoint, device)
        if saved is not None and saved["stamp"] == stamp:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            rng.bit_generator.state = saved["rng"]
            torch.set_rng_state(saved["torch_rng"])
            state = saved["state"]
            best_weights = saved["best_weights"]
            if average is not None:
                average.load(saved["average"])
            resumed = state["epoch"]

    while state["epoch"] < config.max_epochs and state["bad_epochs"] < config.patience:
        start = time.perf_counter()
        net.train()
        shuffled = rng.permutation(train_rows)  # the same in every process
        batch_rng = _batch_rng(rng, ddp, config.seed, state["epoch"])
        losses, n_rows = [], 0
        batches = []
        for lo in range(0, len(shuffled), config.batch_size):
            batch = shuffled[lo : lo + config.batch_size]
            if len(batch) < ddp.world_size:
                break  # DDP needs every process in every step: too few rows to share
            batches.append((batch, ddp.part(batch)))
        inputs_of = _read_ahead if device.type != "cpu" else _in_turn
        for (batch, rows), inputs in inputs_of(batches, make_batch, batch_rng):
            optimizer.zero_grad(set_to_none=True)
            with PRECISIONS[config.precision](device):
                predicted = net(inputs.to(device))
            loss = objective(predicted.float(), rows)
            if ddp.enabled:
                # DDP averages the processes' gradients; scaled by its share of the batch,
                # each one's mean loss makes that the gradient of the batch's mean loss
                (loss * (len(rows) * ddp.world_size / len(batch))).backward()
            else:
                loss.backward()
            optimizer.step()
            if average is not None:
                average.update(model)
            losses.append(float(loss.detach()) * len(rows))
            n_rows += len(rows)
        total, n_rows = ddp.sum([sum(losses), n_rows], device)
        train_loss = total / n_rows
        trained = None
        if average is not None:  # validate (and keep) the average; train on from the weights
            trained = _copy(model)
            model.load_state_dict(average.weights)
        validation_loss = _validate(model, val_rows, make_batch, objective, config, device, ddp)
        validation_score = None
        if score is not None:
            model.eval()
            with torch.no_grad():
                validation_score = float(score(val_rows))
        # lower is better: the loss, or minus the score
        criterion = validation_loss if validation_score is None else -validation_score
        state["epoch"] += 1
        if criterion < state["best"]:
            state["best"], state["best_epoch"], state["bad_epochs"] = (
                criterion,
                state["epoch"],
                0,
            )
            best_weights = _copy(model)
        else:
            state["bad_epochs"] += 1
        if trained is not None:
            model.load_state_dict(trained)
        record = {
            "epoch": state["epoch"],
            "train_loss": train_loss,
            "validation_loss": validation_loss,
            **({} if validation_score is None else {"validation_score": validation_score}),
            "items_per_s": len(train_rows) / (time.perf_counter() - start),
        }
        state["history"].append(record)
        if checkpoint is not None and ddp.is_main:
            with atomic_path(checkpoint) as tmp:
                torch.save(
                    {
                        "stamp": stamp,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": rng.bit_generator.state,
                        "torch_rng": torch.get_rng_state(),
                        "state": state,
                        "best_weights": best_weights,
                        **({} if average is None else {"average": average.state()}),
                    },
                    tmp,
                )
        if on_epoch is not None and ddp.is_main:
            on_epoch(record)
    model.load_state_dict(best_weights)
    return TrainResult(state["history"], state["best_epoch"], state["best"], resumed, val_rows)


def _copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _WeightAverage:
    """An exponential moving average of a model's weights (Polyak and Juditsky 1992):
    after step t, avg <- d_t avg + (1 - d_t) w with d_t = min(decay, (t - 1) / t): the
    plain mean of the weights so far until it would forget more slowly than `decay`, so
    the starting weights, far from any minimum, do not linger. Buffers that are not
    floating point (counts) are copied."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.steps, self.weights = decay, 0, _copy(model)

    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (self.steps - 1) / self.steps)
        with torch.no_grad():
            for name, value in model.state_dict().items():
                if value.dtype.is_floating_point:
                    self.weights[name].lerp_(value.detach(), 1 - d)
                else:
                    self.weights[name].copy_(value)

    def load(self, saved: dict) -> None:
        self.weights = {k: v.clone() for k, v in saved["weights"].items()}
        self.steps = int(saved["steps"])

    def state(self) -> dict:
        return {"weights": self.weights, "steps": self.steps}


def _read_checkpoint(path, device) -> dict | None:
    """A checkpoint's contents, or None for one that is not a checkpoint of this loop.
    Tensors and plain values only (weights_only): a workspace file never runs code."""
    import pickle

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError):
        return None


def _in_turn(batches: list, make_batch: Callable, rng: np.random.Generator):
    """Yield ((batch, rows), make_batch(rows, rng)) for each (batch, rows), reading each
    batch's inputs just before its step: on a CPU, where a reading thread takes a core
    from torch's own threads (see `_read_ahead`)."""
    for item in batches:
        yield item, make_batch(item[1], rng)


def _read_ahead(batches: list, make_batch: Callable, rng: np.random.Generator):
    """As `_in_turn`, but reading the next batch's inputs in a thread while the caller
    trains on this one: for a GPU, whose steps the reads then overlap.

    On a CPU it costs more than it saves. On the 2-core EPYC of docs/benchmarks.md,
    training the small CNN (benchmarks/bench_cnn_train.py) ran at 0.78x the model-alone
    rate with it and 0.88x reading in turn (the reads alone: 9 ms of a 140 ms step): the
    reading thread, competing with torch's two for two cores, stalls their parallel
    regions. One worker runs the reads in order, so `rng` is drawn from exactly as by
    `_in_turn` and a resumed run stays the same run.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="coldtune-read") as pool:
        pending = None
        for item in batches:
            future = pool.submit(make_batch, item[1], rng)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (item, future)
        if pending is not None:
            yield pending[0], pending[1].result()


def _validate(model, rows, make_batch, objective, config, device, ddp: Distributed) -> float:
    """The validation loss, on the same inputs every epoch (a fixed generator); under DDP
    each process scores its share of the rows and the sums are added up."""
    model.eval()
    rng = np.random.default_rng([config.seed, 2, *([ddp.rank] if ddp.enabled else [])])
    mine = ddp.part(rows)
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(mine), config.batch_size):
            batch = mine[lo : lo + config.batch_size]
            with PRECISIONS[config.precision](device):
                predicted = model(make_batch(batch, rng).to(device))
            total += float(objective(predicted.float(), batch)) * len(batch)
    return ddp.sum([total], device)[0] / len(rows)


def _batch_rng(rng: np.random.Generator, ddp: Distributed, seed: int, epoch: int):
    """The generator of an epoch's random inputs: in one process the loop's own; under
    DDP one per process, seeded by (seed, epoch, rank) so that a resumed run draws the
    same (and torch's, for dropout, likewise)."""
    if not ddp.enabled:
        return rng
    torch.manual_seed(ddp.seed(seed, epoch))
    return np.random.default_rng([seed, 3, epoch, ddp.rank])


def train_config(config, **extra) -> TrainConfig:
    """The loop's settings from a model config's training fields."""
    return TrainConfig(
        optimizer=config.optimizer,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        max_epochs=config.max_epochs,
        patience=config.patience,
        seed=config.seed,
        **({"weight_decay": config.weight_decay} if hasattr(config, "weight_decay") else {}),
        **({"average": config.average} if hasattr(config, "average") else {}),
        **extra,
    ).validate()


def fit_report(result) -> dict:
    report = {
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "best_validation_loss": result.best_validation_loss,
        "resumed_from_epoch": result.resumed_from_epoch,
    }
    best = result.history[result.best_epoch - 1] if result.best_epoch else {}
    if "validation_score" in best:  # chosen by a score: report the loss there too
        report["best_validation_loss"] = best["validation_loss"]
        report["best_validation_score"] = best["validation_score"]
    return report


def network_state(arrays: dict, prefix: str = "network.") -> dict[str, torch.Tensor]:
    """A torch state dict from the arrays saved under `prefix`."""
    return {
        k[len(prefix) :]: torch.from_numpy(np.array(v))
        for k, v in arrays.items()
        if k.startswith(prefix)
    }
