"""The training loop: it learns, stops early, and a resumed run is the same run."""

import numpy as np
import pytest
import torch

from coldtune.content.objectives import mse_loss
from coldtune.content.training import TrainConfig, train_loop
from coldtune.errors import ParameterError


def problem(rng, n=200, d=8, k=3):
    X = rng.standard_normal((n, d)).astype(np.float32)
    Y = (X @ rng.standard_normal((d, k))).astype(np.float32)
    features, targets = torch.as_tensor(X), torch.as_tensor(Y)
    return (
        lambda rows, _rng: features[rows],
        lambda predicted, rows: mse_loss(predicted, targets[rows]),
        n,
    )


def model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


@pytest.mark.parametrize("optimizer", ["adamw", "sgd-nesterov"])
def test_it_learns(rng, optimizer):
    make_batch, objective, n = problem(rng)
    config = TrainConfig(optimizer=optimizer, learning_rate=0.01, max_epochs=60, batch_size=16)
    result = train_loop(
        model(), n_items=n, make_batch=make_batch, objective=objective, config=config
    )
    first, best = result.history[0]["validation_loss"], result.best_validation_loss
    assert best < 0.2 * first
    assert result.history[result.best_epoch - 1]["validation_loss"] == best


def test_bf16_autocast_learns_as_well_as_fp32(rng):
    make_batch, objective, n = problem(rng)
    losses = {}
    for precision in ("fp32", "bf16"):
        config = TrainConfig(learning_rate=0.01, max_epochs=40, batch_size=16, precision=precision)
        result = train_loop(
            model(), n_items=n, make_batch=make_batch, objective=objective, config=config
        )
        losses[precision] = result.best_validation_loss
        first = result.history[0]["validation_loss"]
        assert losses[precision] < 0.2 * first, precision
    # bfloat16 keeps 8 bits of mantissa: the same fit, to within a few percent of the start
    assert abs(losses["bf16"] - losses["fp32"]) < 0.05 * first, losses
    with pytest.raises(ParameterError, match="precision must be one of fp32, bf16"):
        TrainConfig(precision="fp8").validate()


def test_early_stopping_keeps_the_best_epoch(rng):
    make_batch, objective, n = problem(rng)
    # a learning rate far too high: the loss gets worse, training stops after `patience`
    config = TrainConfig(learning_rate=5.0, max_epochs=100, patience=3)
    net = model()
    result = train_loop(net, n_items=n, make_batch=make_batch, objective=objective, config=config)
    assert len(result.history) == result.best_epoch + 3 < 100
    val = np.array([r["validation_loss"] for r in result.history])
    assert result.best_validation_loss == val.min()


@pytest.mark.parametrize("average", [0.0, 0.9])
def test_a_resumed_run_is_the_same_run(rng, tmp_path, average):
    make_batch, objective, n = problem(rng)
    config = TrainConfig(
        learning_rate=0.01, max_epochs=8, patience=100, batch_size=16, average=average
    )
    straight = model()
    train_loop(straight, n_items=n, make_batch=make_batch, objective=objective, config=config)

    checkpoint = tmp_path / "checkpoint.pt"

    def stop_after_3(record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    interrupted = model()
    with pytest.raises(KeyboardInterrupt):
        train_loop(
            interrupted, n_items=n, make_batch=make_batch, objective=objective, config=config,
            checkpoint=checkpoint, on_epoch=stop_after_3,
        )  # fmt: skip
    resumed = model(seed=99)  # other initial weights: the checkpoint must replace them
    result = train_loop(
        resumed, n_items=n, make_batch=make_batch, objective=objective, config=config,
        checkpoint=checkpoint,
    )  # fmt: skip
    assert result.resumed_from_epoch == 3 and len(result.history) == 8
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    # another configuration does not resume from that checkpoint
    other = train_loop(
        model(), n_items=n, make_batch=make_batch, objective=objective,
        config=TrainConfig(learning_rate=0.02, max_epochs=2), checkpoint=checkpoint,
    )  # fmt: skip
    assert other.resumed_from_epoch == 0


def test_the_weight_average_is_a_mean_then_an_exponential_average():
    from coldtune.content.training import _WeightAverage

    net = torch.nn.Linear(2, 1)
    steps = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[5.0, 4.0]])]
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[100.0, 100.0]]))  # the start: never averaged in
    average = _WeightAverage(net, decay=0.6)
    for w in steps:
        with torch.no_grad():
            net.weight.copy_(w)
        average.update(net)
    # d = 0 (the first step's weights), then 1/2 (their mean), then min(0.6, 2/3) = 0.6
    expected = 0.6 * (steps[0] + steps[1]) / 2 + 0.4 * steps[2]
    torch.testing.assert_close(average.weights["weight"], expected)


def test_with_averaging_the_average_is_validated_and_returned(rng):
    make_batch, objective, n = problem(rng)
    net = model()
    seen = {"validated": [], "trained": []}

    def spy(predicted, rows):
        kind = "trained" if torch.is_grad_enabled() else "validated"
        seen[kind].append(net[0].weight.detach().clone())
        return objective(predicted, rows)

    config = TrainConfig(learning_rate=0.05, max_epochs=1, batch_size=16, average=0.8)
    train_loop(net, n_items=n, make_batch=make_batch, objective=spy, config=config)
    # every validation batch saw the same weights, and those are the ones returned
    torch.testing.assert_close(net[0].weight, seen["validated"][0], rtol=0, atol=0)
    assert all(torch.equal(w, seen["validated"][0]) for w in seen["validated"])
    # they are not the last weights trained (the step after the last training call's)
    assert not torch.allclose(net[0].weight, seen["trained"][-1])
    with pytest.raises(ParameterError, match="average must be in"):
        TrainConfig(average=1.0).validate()


def test_bad_settings_are_named():
    with pytest.raises(ParameterError, match="optimizer"):
        TrainConfig(optimizer="adam9").validate()
    with pytest.raises(ParameterError, match="batch_size"):
        TrainConfig(batch_size=0).validate()


def test_a_score_chooses_the_epoch_kept_and_when_to_stop(rng):
    """With `score`, the epoch kept is the one of the highest score, not of the lowest
    loss, and patience counts epochs without a better score."""
    make_batch, objective, n = problem(rng)
    config = TrainConfig(learning_rate=0.01, max_epochs=12, patience=3, batch_size=16)
    # a score that peaks at the third call whatever the loss does
    calls = []

    def score(rows):
        calls.append(np.array(rows))
        return -abs(len(calls) - 3)

    result = train_loop(
        model(),
        n_items=n,
        make_batch=make_batch,
        objective=objective,
        config=config,
        score=score,
    )
    assert result.best_epoch == 3 and len(result.history) == 6
    assert [r["validation_score"] for r in result.history] == [-2, -1, 0, -1, -2, -3]
    # the loss kept falling: by the loss, a later epoch would have been kept
    losses = [r["validation_loss"] for r in result.history]
    assert int(np.argmin(losses)) + 1 > 3
    # it is handed the validation rows, the same every epoch, none of them trained on
    assert all(np.array_equal(c, result.validation_rows) for c in calls)
    assert len(result.validation_rows) == 20
