"""Warm-up of cold songs from their first plays: the prior fold-in, the protocol that
measures it, the choice of its weight on warm songs, and the command."""

import numpy as np
import pytest
import scipy.sparse as sp
from reference import confidence_dense

from coldtune import WeightedMatrixFactorization
from coldtune.errors import ParameterError

ALPHA, EPS, LAM = 2.0, 0.5, 0.3


def prior_fold_in_dense(plays, X, prior, weight, alpha, epsilon, regularization):
    # y_i = argmin sum_u c_ui (p_ui - x_u^T y)^2 + lambda ||y||^2 + w ||y - y'_i||^2,
    # by its normal equations with a dense C_i, one song at a time; unplayed: y'_i
    C = confidence_dense(plays, alpha, epsilon)
    P = (plays > 0).astype(float)
    k = X.shape[1]
    out = np.array(prior, dtype=float)
    for i in range(plays.shape[1]):
        if not P[:, i].any():
            continue
        Ci = np.diag(C[:, i])
        A = X.T @ Ci @ X + (regularization + weight) * np.eye(k)
        out[i] = np.linalg.solve(A, X.T @ Ci @ P[:, i] + weight * prior[i])
    return out


@pytest.fixture
def fitted(rng):
    plays = (rng.random((40, 12)) < 0.3) * rng.zipf(2.0, (40, 12))
    model = WeightedMatrixFactorization(4, ALPHA, EPS, LAM, 10, "torch", seed=1, device="cpu")
    return model.fit(sp.csr_matrix(plays.astype(float)))


@pytest.fixture
def new_songs(rng):
    plays = (rng.random((40, 6)) < 0.2) * rng.zipf(2.0, (40, 6))
    plays[:, 2] = 0  # a song nobody has played yet
    plays[:, 4] = 0
    plays[7, 4] = 3  # a song with one listener
    prior = rng.standard_normal((6, 4)).astype(np.float32)
    return plays.astype(float), prior


@pytest.mark.parametrize("weight", [0.0, 0.5, 7.0])
def test_prior_fold_in_equals_the_dense_solve(fitted, new_songs, weight):
    plays, prior = new_songs
    fast = fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior, prior_weight=weight)
    slow = prior_fold_in_dense(plays, fitted.user_factors_, prior, weight, ALPHA, EPS, LAM)
    np.testing.assert_allclose(fast, slow, atol=2e-5)


def test_prior_weight_zero_is_the_plain_fold_in(fitted, new_songs):
    plays, prior = new_songs
    plain = fitted.fold_in_songs(sp.csr_matrix(plays))
    blended = fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior, prior_weight=1e-9)
    played = plays.any(0)
    np.testing.assert_allclose(blended[played], plain[played], atol=1e-6)
    assert np.all(plain[~played] == 0)  # without a prior an unplayed song stays at 0


def test_an_infinite_prior_weight_keeps_the_prior(fitted, new_songs):
    plays, prior = new_songs
    for weight in (1e9, np.inf):
        kept = fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior, prior_weight=weight)
        np.testing.assert_allclose(kept, prior, atol=1e-5)


def test_a_song_without_plays_keeps_its_prior(fitted, new_songs):
    plays, prior = new_songs
    folded = fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior, prior_weight=0.5)
    np.testing.assert_array_equal(folded[2], prior[2])
    assert np.abs(folded[4] - prior[4]).max() > 1e-3  # one listener already moves it


def test_the_prior_fold_in_checks_its_arguments(fitted, new_songs):
    plays, prior = new_songs
    with pytest.raises(ParameterError, match="prior_weight"):
        fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior)
    with pytest.raises(ParameterError, match="prior_weight"):
        fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior, prior_weight=-1.0)
    with pytest.raises(ParameterError, match="shape"):
        fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior[:3], prior_weight=1.0)


# ----------------------------------------------------------------------- the protocol


def random_cold_plays(rng, n_users=60, n_songs=15):
    plays = (rng.random((n_users, n_songs)) < 0.25) * rng.zipf(2.0, (n_users, n_songs))
    plays[:, 3] = 0
    plays[5, 3] = 2  # a song with a single listener
    return sp.csr_matrix(plays.astype(float))


@pytest.mark.parametrize("k", [0, 1, 3, 100])
def test_reveal_keeps_one_listener_per_song(rng, k):
    from coldtune.eval.warmup import reveal_listeners

    plays = random_cold_plays(rng)
    reveal = reveal_listeners(plays, k, seed=4)
    assert abs(reveal.revealed + reveal.held_out - plays).max() == 0  # a partition
    assert reveal.revealed.multiply(reveal.held_out).nnz == 0
    listeners = np.diff(plays.tocsc().indptr)
    shown = np.diff(reveal.revealed.tocsc().indptr)
    np.testing.assert_array_equal(shown, np.minimum(k, listeners - 1))
    assert reveal.n_capped == int(np.sum(listeners < k + 1))
    again = reveal_listeners(plays, k, seed=4)
    assert (again.revealed != reveal.revealed).nnz == 0  # the seed fixes the draw
    if k == 1:
        other = reveal_listeners(plays, k, seed=5)
        assert (other.revealed != reveal.revealed).nnz > 0


def evaluate_revealed_slow(X, Y, reveal):
    # per user: drop the revealed songs, rank the rest; sklearn's AP (k >= songs) and AUC
    from sklearn.metrics import average_precision_score, roc_auc_score

    held = reveal.held_out.toarray() > 0
    shown = reveal.revealed.toarray() > 0
    ap, auc = [], []
    for u in range(X.shape[0]):
        if not held[u].any():
            continue
        keep = ~shown[u]
        scores, relevant = (X[u] @ Y.T)[keep], held[u][keep]
        ap.append(average_precision_score(relevant, scores))
        auc.append(roc_auc_score(relevant, scores) if not relevant.all() else np.nan)
    return np.array(ap), np.array(auc)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_evaluate_revealed_leaves_revealed_songs_out(rng, k):
    from coldtune.eval.warmup import evaluate_revealed, reveal_listeners

    plays = random_cold_plays(rng)
    reveal = reveal_listeners(plays, k, seed=k)
    X = rng.standard_normal((60, 3))
    Y = rng.standard_normal((15, 3))
    Y[7] = Y[8]  # ties
    result = evaluate_revealed(X, Y, reveal, k=500)
    ap, auc = evaluate_revealed_slow(X.astype(np.float32), Y.astype(np.float32), reveal)
    order = np.argsort(result.users)  # Evaluation keeps users in row order already
    np.testing.assert_allclose(result.average_precision[order], ap, atol=1e-9)
    np.testing.assert_allclose(result.auc[order], auc, atol=1e-9)


# ----------------------------------------------------------------------- the step, the command


def small_config():
    from coldtune.steps.warmup import WarmupConfig

    return WarmupConfig(ks=(0, 2, 5), seeds=2, weights=(0.0, 10.0, np.inf))


@pytest.fixture(scope="module")
def warm_workspace(small_demo, tmp_path_factory):
    """A copy of the small demo (hard links) with the prior weight chosen and the table
    made, the bow-linear model as prior (a CNN would train again for the validation)."""
    import os
    import shutil

    from coldtune.steps import warmup
    from coldtune.workspace import Workspace

    demo, _ = small_demo
    root = tmp_path_factory.mktemp("warm") / "W"
    shutil.copytree(demo.root, root, copy_function=os.link)
    workspace = Workspace(root)
    chosen = warmup.choose_prior_weight(workspace, small_config(), model="bow-linear")
    results = warmup.table(workspace, small_config(), model="bow-linear")
    return workspace, chosen, results


def test_the_weight_is_chosen_on_warm_songs_only(warm_workspace):
    from coldtune.data.plays import load_interactions
    from coldtune.data.splits import load_split
    from coldtune.workspace import Workspace

    workspace, chosen, _ = warm_workspace
    outer = load_split(workspace, interactions := load_interactions(workspace))
    inner = Workspace(workspace.root / "warmup" / "validation")
    inner_split = load_split(inner, load_interactions(inner))
    ids = interactions.song_ids
    validation = set(ids[inner_split.cold_songs])
    assert validation and validation <= set(ids[outer.warm_songs])
    assert not (set(ids[inner_split.warm_songs]) | validation) & set(ids[outer.cold_songs])
    assert chosen["validation_songs"] == len(validation)
    # the validation model was trained without its validation songs
    report = (inner.models_dir("bow-linear") / "report.json").read_text()
    assert f'"warm_songs": {len(inner_split.warm_songs)}' in report
    weights = [row["prior_weight"] for row in chosen["rows"]]
    assert weights == [0.0, 10.0, "inf"] and chosen["prior_weight"] in weights
    best = max(chosen["rows"], key=lambda row: row["auc"])
    assert best["prior_weight"] == chosen["prior_weight"]


def test_nothing_revealed_is_the_evaluation(warm_workspace):
    # k = 0: the audio row and the upper bound are those of `coldtune evaluate`
    from coldtune.steps.evaluate import evaluate

    workspace, _, results = warm_workspace
    rows = {row["model"]: row for row in evaluate(workspace, models=["bow-linear"])["rows"]}
    at_zero = results["per_k"]["0"]["rows"]
    for ours, theirs in (("audio", "bow-linear"), ("upper bound", "upper bound")):
        assert at_zero[ours]["map"]["mean"] == pytest.approx(rows[theirs]["map"], abs=1e-9)
        assert at_zero[ours]["auc"]["mean"] == pytest.approx(rows[theirs]["auc"], abs=1e-9)
    assert at_zero["fold-in"]["auc"]["mean"] == pytest.approx(0.5)  # all factors 0: ties


def test_the_table_and_its_plot(warm_workspace):
    from coldtune.steps.report import _warmup_html
    from coldtune.steps.warmup import PER_K_ROW, ROWS, is_current, table_markdown

    workspace, _, results = warm_workspace
    assert set(results["per_k"]) == {"0", "2", "5"}
    for entry in results["per_k"].values():
        assert set(entry["rows"]) == {*ROWS, PER_K_ROW}
        for row in (*ROWS, PER_K_ROW):
            assert entry["rows"][row]["auc"]["n"] == 2  # two draws: a mean and its SE
        upper = entry["rows"]["upper bound"]["auc"]["mean"]
        assert upper > entry["rows"]["audio"]["auc"]["mean"]
    assert results["per_k"]["5"]["mean_revealed"] > results["per_k"]["2"]["mean_revealed"]
    assert (workspace.results_dir / "warmup.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 2 | audio |" in table_markdown(results)
    assert is_current(workspace, results)
    assert "<img alt='warm-up curve'" in _warmup_html(workspace, results)


def test_first_plays_warm_up_a_cold_song_for_the_catalogue(warm_workspace, tmp_path):
    from typer.testing import CliRunner

    from coldtune.cli import app
    from coldtune.data.plays import load_interactions
    from coldtune.data.splits import load_split
    from coldtune.steps.catalogue import load_catalogue
    from coldtune.steps.warmup import load_prior_weight, weights_for
    from coldtune.steps.wmf import load_wmf

    workspace, chosen, _ = warm_workspace
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    cold = interactions.song_ids[split.cold_songs]
    users = interactions.user_ids[split.users]
    lines = [f"{users[u]}\t{cold[0]}\t{u + 1}" for u in range(4)]
    lines += [
        f"stranger\t{cold[1]}\t1",
        f"{users[0]}\t{interactions.song_ids[split.warm_songs[0]]}\t2",
    ]
    path = tmp_path / "first.txt"
    path.write_text("\n".join(lines) + "\n")
    before = load_catalogue(workspace, model="bow-linear")
    runner = CliRunner()
    result = runner.invoke(
        app, ["warm-up", "apply", str(path), "-w", str(workspace.root), "--model", "bow-linear"]
    )
    assert result.exit_code == 0, result.output
    assert "4 used" in result.output and "1 unknown user" in result.output
    assert "1 warm song" in result.output and "1 cold songs warmed up" in result.output
    again = runner.invoke(
        app, ["warm-up", "apply", str(path), "-w", str(workspace.root), "--model", "bow-linear"]
    )
    assert "applied before" in again.output
    after = load_catalogue(workspace, model="bow-linear")
    row = list(after.song_ids).index(cold[0])
    # the prior fold-in of the four plays, from the audio prediction the catalogue had
    wmf = load_wmf(workspace, split=split)
    plays = np.zeros((len(users), 1))
    plays[:4, 0] = [1, 2, 3, 4]
    expected = wmf.fold_in_songs(
        sp.csr_matrix(plays),
        prior=before.predicted_factors[row : row + 1],
        prior_weight=float(weights_for(load_prior_weight(workspace, model="bow-linear"), [4])[0]),
    )
    np.testing.assert_allclose(after.predicted_factors[row], expected[0], atol=1e-5)
    others = np.ones(len(after.song_ids), dtype=bool)
    others[row] = False
    np.testing.assert_array_equal(after.predicted_factors[others], before.predicted_factors[others])
    # the first plays count as played: the song is no longer recommended to its listeners
    assert [after.training_plays[u, row] for u in range(5)] == [1, 2, 3, 4, 0]
    assert before.training_plays[:, row].nnz == 0
    for u, listened in ((0, True), (4, False)):
        picks = {p["row"] for p in after.recommend(str(users[u]), n=len(after), cold_only=True)}
        assert (row not in picks) == listened


def _copy(workspace, root):
    import os
    import shutil

    from coldtune.workspace import Workspace

    shutil.copytree(workspace.root, root, copy_function=os.link)
    return Workspace(root)


def test_a_new_release_warms_up_and_two_runs_at_once_both_land(warm_workspace, tmp_path):
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from coldtune.steps.catalogue import load_catalogue
    from coldtune.steps.releases import add_releases
    from coldtune.steps.warmup import apply

    workspace = _copy(warm_workspace[0], tmp_path / "W")
    kept = workspace.warmup_dir / "plays.npz"
    kept_before = len(np.load(kept)["counts"]) if kept.exists() else 0  # an earlier test's
    before = load_catalogue(workspace, model="bow-linear")
    original = str(before.song_ids[before.cold][0])
    (tmp_path / "new").mkdir()
    shutil.copy(before.clips[original], tmp_path / "new" / "SONEWRELEASE00000.ogg")
    add_releases(workspace, tmp_path / "new", model="bow-linear", in_process=True)
    users = [str(u) for u in before.user_ids[:6]]
    files = []
    for name, people in (("a.txt", users[:3]), ("b.txt", users[3:5])):
        files.append(tmp_path / name)
        files[-1].write_text("".join(f"{u}\tSONEWRELEASE00000\t2\n" for u in people))
    with ThreadPoolExecutor(2) as pool:  # the lock: neither run loses the other's plays
        reports = list(pool.map(lambda f: apply(workspace, f, model="bow-linear"), files))
    assert [r["used"] for r in reports] == [3, 2]
    assert max(r["plays_kept"] for r in reports) == kept_before + 5
    after = load_catalogue(workspace, model="bow-linear")
    row = after.song_row("SONEWRELEASE00000")
    assert [after.training_plays[after.user_row(u), row] for u in users] == [2] * 5 + [0]
    # the prior fold-in of its five plays, from the prediction of the same audio
    from coldtune.data.plays import load_interactions
    from coldtune.data.splits import load_split
    from coldtune.steps.warmup import load_prior_weight, weights_for
    from coldtune.steps.wmf import load_wmf

    wmf = load_wmf(workspace, split=load_split(workspace, load_interactions(workspace)))
    plays = np.zeros((len(after.user_ids), 1))
    plays[[after.user_row(u) for u in users[:5]], 0] = 2
    weight = weights_for(load_prior_weight(workspace, model="bow-linear"), [5])[0]
    expected = wmf.fold_in_songs(
        sp.csr_matrix(plays),
        prior=after.predicted_factors[after.song_row(original)][None],
        prior_weight=float(weight),
    )
    np.testing.assert_allclose(after.predicted_factors[row], expected[0], atol=1e-5)
    with np.load(workspace.warmup_dir / "factors.npz") as saved:
        assert "SONEWRELEASE00000" in saved["song_ids"].tolist()
    # nothing is written into the clip model's cache of audio predictions
    fresh = load_catalogue(_copy(workspace, tmp_path / "W2"), model="bow-linear")
    np.testing.assert_array_equal(fresh.predicted_factors, after.predicted_factors)


def test_weights_per_number_of_listeners():
    from coldtune.steps.warmup import weights_for

    chosen = {"prior_weight": 100.0, "best_per_k": {"0": 0.0, "1": "inf", "5": 10.0, "20": 3.0}}
    listeners = [1, 2, 4, 5, 19, 20, 500]
    np.testing.assert_array_equal(
        weights_for(chosen, listeners), [np.inf, np.inf, np.inf, 10, 10, 3, 3]
    )
    np.testing.assert_array_equal(weights_for(chosen, listeners, per_k=False), [100.0] * 7)
