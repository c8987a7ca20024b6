"""The training loop under DistributedDataParallel: 2 CPU processes (gloo) hold the same
weights after every step, and end where one process ends on the same batches."""

import socket

import numpy as np
import torch
import torch.multiprocessing as mp

from coldtune.content.distributed import Distributed, current
from coldtune.content.objectives import mse_loss
from coldtune.content.training import TrainConfig, train_loop

# 150 songs, 15 for validation: 135 training rows in batches of 16, the last one 7 rows
# (the two processes' shares differ by one there)
N_ITEMS, CONFIG = 150, TrainConfig(learning_rate=0.02, batch_size=16, max_epochs=3, patience=9)


def problem():
    rng = np.random.default_rng(7)
    X = torch.as_tensor(rng.standard_normal((N_ITEMS, 8)).astype(np.float32))
    Y = torch.as_tensor((X.numpy() @ rng.standard_normal((8, 3))).astype(np.float32))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    if current().rank == 1:  # DDP must start every process from rank 0's weights
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
    seen = []  # the weights at the start of every training step

    def make_batch(rows, _rng):
        return X[rows]

    def objective(predicted, rows):
        # called between a step's forward pass and its update (make_batch is not: the
        # loop reads the next batch ahead, in a thread)
        if net.training:
            seen.append(torch.cat([p.detach().flatten() for p in net.parameters()]).clone())
        return mse_loss(predicted, Y[rows])

    return net, make_batch, objective, seen


def _worker(rank, world_size, port, out):
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    assert current() == Distributed(rank, world_size, rank)  # joins the group (gloo)
    net, make_batch, objective, seen = problem()
    result = train_loop(
        net,
        n_items=N_ITEMS,
        make_batch=make_batch,
        objective=objective,
        config=CONFIG,
        checkpoint=f"{out}/checkpoint.pt",
        device="cpu",
    )
    seen.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    torch.save(
        {"seen": torch.stack(seen), "validation": [r["validation_loss"] for r in result.history]},
        f"{out}/rank{rank}.pt",
    )
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_hold_the_same_weights_after_every_step(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    steps = 3 * -(-135 // 16)  # 3 epochs of 9 steps, plus the final weights
    assert ranks[0]["seen"].shape[0] == ranks[1]["seen"].shape[0] == steps + 1
    torch.testing.assert_close(ranks[0]["seen"], ranks[1]["seen"], rtol=0, atol=0)
    assert not torch.equal(ranks[0]["seen"][0], ranks[0]["seen"][-1])  # it did learn
    assert ranks[0]["validation"] == ranks[1]["validation"]
    assert (tmp_path / "checkpoint.pt").exists()

    # one process on the same global batches reaches the same weights
    net, make_batch, objective, seen = problem()
    single = train_loop(
        net, n_items=N_ITEMS, make_batch=make_batch, objective=objective, config=CONFIG
    )
    seen.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    torch.testing.assert_close(ranks[0]["seen"], torch.stack(seen), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        ranks[0]["validation"], [r["validation_loss"] for r in single.history], rtol=1e-5
    )
