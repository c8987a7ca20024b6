"""New listeners: folded in from their plays (eq. 3 for one user row, the song factors
fixed) and recommended to, from Python, the CLI and the service."""

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from coldtune.catalogue import Catalogue
from coldtune.cf.wmf import WeightedMatrixFactorization
from coldtune.cli import app
from coldtune.data.plays import read_listener_plays
from coldtune.errors import ParameterError, PlaysFormatError, WorkspaceError
from coldtune.serve import create_app
from coldtune.steps.catalogue import load_catalogue

N_USERS, N_WARM, N_COLD, K = 60, 40, 6, 4


@pytest.fixture(scope="module")
def converged():
    """A catalogue over exact ALS run to its fixed point (200 sweeps: the users are the
    exact eq. 3 solution for the final songs, to 1e-5), with 6 cold songs."""
    rng = np.random.default_rng(0)
    plays = sp.random(
        N_USERS, N_WARM, density=0.2, random_state=1, data_rvs=lambda n: rng.integers(1, 20, n)
    ).tocsr()
    wmf = WeightedMatrixFactorization(
        factors=K, iterations=200, backend="torch", regularization=1.0, seed=0
    ).fit(plays)
    assert np.abs(wmf.fold_in_users(plays) - wmf.user_factors_).max() < 1e-5  # converged
    predicted = rng.normal(size=(N_WARM + N_COLD, K)).astype(np.float32)
    catalogue = Catalogue(
        song_ids=np.array([f"S{i:03d}" for i in range(N_WARM + N_COLD)]),
        cold=np.arange(N_WARM + N_COLD) >= N_WARM,
        user_ids=np.array([f"U{u:03d}" for u in range(N_USERS)]),
        user_factors=wmf.user_factors_,
        usage_factors=np.vstack([wmf.song_factors_, predicted[N_WARM:]]),
        predicted_factors=predicted,
        training_plays=sp.hstack([plays, sp.csr_matrix((N_USERS, N_COLD))]).tocsr(),
        fold_in=wmf.fold_in_users,
    )
    return catalogue, plays


def plays_of(plays: sp.csr_matrix, u: int) -> dict[str, float]:
    row = plays.getrow(u)
    return {f"S{j:03d}": float(c) for j, c in zip(row.indices, row.data, strict=True)}


def test_a_listener_with_an_existing_users_plays_gets_that_users_factors(converged):
    catalogue, plays = converged
    for u in (0, 17, 59):
        found = catalogue.recommend_for_plays(plays_of(plays, u), n=12)
        np.testing.assert_allclose(found["factors"], catalogue.user_factors[u], atol=1e-5)
        expected = catalogue.recommend(f"U{u:03d}", n=12)
        assert [p["row"] for p in found["songs"]] == [p["row"] for p in expected]
        np.testing.assert_allclose(
            [p["score"] for p in found["songs"]], [p["score"] for p in expected], atol=1e-4
        )
        cold = catalogue.recommend_for_plays(plays_of(plays, u), n=50, cold_only=True)
        assert [p["row"] for p in cold["songs"]] == [
            p["row"] for p in catalogue.recommend(f"U{u:03d}", n=50, cold_only=True)
        ]


def test_unknown_songs_are_named_and_played_songs_never_recommended(converged):
    catalogue, plays = converged
    listener = plays_of(plays, 5) | {"NOPE1": 3.0, "S041": 2.0}  # S041 is cold
    found = catalogue.recommend_for_plays(listener, n=N_WARM + N_COLD)
    assert found["unknown"] == ["NOPE1"] and found["cold_played"] == ["S041"]
    assert found["used"] == sorted(plays_of(plays, 5))
    recommended = {str(catalogue.song_ids[p["row"]]) for p in found["songs"]}
    assert not recommended & (set(listener) - {"NOPE1"})
    assert len(recommended) == N_WARM + N_COLD - len(listener) + 1
    # the unknown id and the cold song do not change the fold-in
    np.testing.assert_allclose(found["factors"], catalogue.user_factors[5], atol=1e-5)


@pytest.mark.parametrize(
    ("plays", "message"),
    [
        ({"NOPE": 1.0}, "none of the 1 songs played is a warm song"),
        ({"S041": 4.0}, "none of the 1 songs played is a warm song"),
        ({"S001": 0.0}, "with a play count above 0"),
        ({"S001": -1.0}, "song 'S001': the play count must be >= 0"),
        ({"S001": "two"}, "the play count must be a number"),
        ({"../x": 1.0}, "is not an id"),
    ],
)
def test_bad_listeners_are_refused_with_a_reason(converged, plays, message):
    catalogue, _ = converged
    with pytest.raises(ParameterError, match=message.replace("(", r"\(")):
        catalogue.recommend_for_plays(plays)


def test_a_catalogue_without_wmf_cannot_fold_in(converged):
    catalogue, _ = converged
    bare = Catalogue(
        song_ids=catalogue.song_ids,
        cold=catalogue.cold,
        user_ids=catalogue.user_ids,
        user_factors=catalogue.user_factors,
        usage_factors=catalogue.usage_factors,
        predicted_factors=catalogue.predicted_factors,
        training_plays=catalogue.training_plays,
    )
    with pytest.raises(WorkspaceError, match="built without WMF"):
        bare.recommend_for_plays({"S001": 1.0})


def test_a_listeners_plays_file_reads_every_layout_and_reports_bad_lines(tmp_path):
    path = tmp_path / "me.txt"
    path.write_text(
        "song,count\n"
        "# my plays\n"
        "SOA\t3\n"
        "SOB, 2\n"
        "SOC 1.5   # a comment\n"
        "\n"
        "SOD\n"
        "SOA,4\n"
        "SOE,lots\n"
        "SOF,-2\n"
        "SOG,1,extra\n"
    )
    plays, bad = read_listener_plays(path)
    assert plays == {"SOA": 7.0, "SOB": 2.0, "SOC": 1.5, "SOD": 1.0}
    assert [(b.line, b.reason) for b in bad] == [
        (9, "count 'lots' is not a number"),
        (10, "count '-2' is not a number >= 0"),
        (11, "3 fields, expected song[,count]"),
    ]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(PlaysFormatError, match="no usable line"):
        read_listener_plays(tmp_path / "empty.txt")
    with pytest.raises(PlaysFormatError, match="no such file"):
        read_listener_plays(tmp_path / "absent.txt")


def test_recommend_plays_from_the_cli_and_the_service_on_the_small_world(small_workspace, tmp_path):
    catalogue = load_catalogue(small_workspace)
    u = 7
    row = catalogue.training_plays.getrow(u)
    listener = {
        str(catalogue.song_ids[j]): float(c) for j, c in zip(row.indices, row.data, strict=True)
    }
    expected = catalogue.recommend_for_plays(listener, n=5)
    ids = [str(catalogue.song_ids[p["row"]]) for p in expected["songs"]]
    assert not set(ids) & set(listener)

    path = tmp_path / "plays.tsv"
    path.write_text("".join(f"{s}\t{int(c)}\n" for s, c in listener.items()) + "SOUNKNOWN\t2\n")
    result = CliRunner().invoke(
        app, ["recommend", "--plays", str(path), "-w", str(small_workspace.root), "-n", "5"]
    )
    assert result.exit_code == 0, result.output
    assert f"folded in from {len(listener)} warm songs" in result.output
    assert "1 songs not in the catalogue, not read: SOUNKNOWN" in result.output
    assert [line.split("(")[-1].split(")")[0] for line in result.output.splitlines()[-5:]] == ids
    both = CliRunner().invoke(app, ["recommend", "x", "--plays", str(path), "-w", "W"])
    assert both.exit_code == 2 and "give one of" in both.output

    with TestClient(create_app(small_workspace)) as client:
        body = client.post(
            "/api/recommendations", json={"plays": listener | {"SOUNKNOWN": 2}, "n": 5}
        ).json()
        assert [s["song_id"] for s in body["songs"]] == ids
        assert body["unknown"] == ["SOUNKNOWN"]
        np.testing.assert_allclose(body["factors"], expected["factors"], atol=1e-5)
        negative = client.post("/api/recommendations", json={"plays": {ids[0]: -1}})
        assert negative.status_code == 422 and "greater than or equal to 0" in negative.text
        none_known = client.post("/api/recommendations", json={"plays": {"SOUNKNOWN": 1}})
        assert none_known.status_code == 400 and "none of the 1 songs" in none_known.text
        empty = client.post("/api/recommendations", json={"plays": {}})
        assert empty.status_code == 422


@pytest.mark.parametrize("cold_only", [False, True])
def test_recommend_all_equals_recommend_for_every_user(converged, cold_only):
    catalogue, _ = converged
    seen = []
    for users, rows, scores in catalogue.recommend_all(n=7, cold_only=cold_only, batch=16):
        assert rows.shape == scores.shape == (len(users), 7)
        for u, got, got_scores in zip(users, rows, scores, strict=True):
            expected = catalogue.recommend(f"U{u:03d}", n=7, cold_only=cold_only)
            kept = got[got >= 0]
            assert list(kept) == [p["row"] for p in expected]
            np.testing.assert_allclose(
                got_scores[: len(kept)], [p["score"] for p in expected], rtol=1e-5
            )
            assert (got_scores[len(kept) :] == -np.inf).all()  # cold-only: 6 songs at most
        seen.extend(users)
    assert seen == list(range(N_USERS))


def test_recommend_all_pads_users_with_too_few_songs_left(converged):
    catalogue, plays = converged
    _, rows, scores = next(catalogue.recommend_all(n=N_WARM + N_COLD, batch=4))
    for u in range(4):
        left = N_WARM + N_COLD - plays.getrow(u).nnz
        assert (rows[u, :left] >= 0).all() and (rows[u, left:] == -1).all()
        assert np.isfinite(scores[u, :left]).all() and (scores[u, left:] == -np.inf).all()
        assert not set(rows[u, :left]) & set(plays.getrow(u).indices)
    with pytest.raises(ParameterError, match="n and batch must be >= 1"):
        next(catalogue.recommend_all(n=0))


def test_recommend_all_writes_every_users_top_songs_as_parquet(small_workspace, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "recs.parquet"
    result = CliRunner().invoke(
        app, ["recommend", "--all", "-o", str(out), "-w", str(small_workspace.root), "-n", "4"]
    )
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pandas()
    catalogue = load_catalogue(small_workspace)
    assert len(table) == 4 * catalogue.n_users and list(table.columns) == [
        "user", "rank", "song", "score"
    ]  # fmt: skip
    for u in (0, 9, catalogue.n_users - 1):
        user = str(catalogue.user_ids[u])
        mine = table[table.user == user].sort_values("rank")
        assert list(mine["rank"]) == [1, 2, 3, 4]
        expected = catalogue.recommend(user, n=4)
        assert list(mine.song) == [str(catalogue.song_ids[p["row"]]) for p in expected]
    assert not list(tmp_path.glob(".*part"))  # no temporary file left behind
    missing = CliRunner().invoke(app, ["recommend", "--all", "-w", str(small_workspace.root)])
    assert missing.exit_code == 2 and "--all needs --out" in missing.output


def test_recommend_all_never_recommends_a_song_without_factors(converged):
    """A song with no usable factors (no audio) has its column barred in every batch; the
    score block reused from batch to batch keeps no trace of the one before."""
    import copy

    catalogue, _ = converged
    barred = copy.copy(catalogue)
    barred.scoring_factors = catalogue.scoring_factors.copy()
    top = next(catalogue.recommend_all(n=1, batch=4))[1][:, 0]
    song = int(np.bincount(top[top >= 0]).argmax())  # a song some users get first
    barred.scoring_factors[song] = np.nan
    batches = list(barred.recommend_all(n=5, batch=4))
    assert len(batches) > 1
    for users, rows, _scores in batches:
        assert song not in rows
        for u, got in zip(users, rows, strict=True):
            want = [r for r, _ in _exact_top(catalogue, u, exclude_song=song, n=5)]
            assert list(got[got >= 0]) == want


def _exact_top(catalogue, u, *, exclude_song, n):
    scores = catalogue.scoring_factors @ catalogue.user_factors[u]
    played = catalogue.training_plays[u].indices
    scores[played] = -np.inf
    scores[exclude_song] = -np.inf
    order = np.argsort(-scores, kind="stable")[:n]
    return [(int(r), float(scores[r])) for r in order if np.isfinite(scores[r])]
