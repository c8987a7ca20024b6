import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_lines

from coldtune import read_plays
from coldtune.data.plays import load_interactions, save_interactions
from coldtune.errors import PlaysFormatError
from coldtune.workspace import Workspace


def dense(interactions):
    """{(user id, song id): count} of an Interactions, for known-answer comparisons."""
    m = interactions.matrix.tocoo()
    return {
        (interactions.user_ids[u], interactions.song_ids[i]): int(c)
        for u, i, c in zip(m.row, m.col, m.data, strict=True)
    }


def test_triplets_known_answer_sums_repeats(tmp_path):
    path = write_lines(
        tmp_path / "train_triplets.txt",
        ["alice\tSO1\t3", "alice\tSO2\t1", "bob\tSO1\t7", "alice\tSO1\t2", "carol\tSO3\t0"],
    )
    plays = read_plays(path)
    assert dense(plays) == {("alice", "SO1"): 5, ("alice", "SO2"): 1, ("bob", "SO1"): 7}
    assert list(plays.user_ids) == ["alice", "bob"]  # carol has no play: not a user
    assert list(plays.song_ids) == ["SO1", "SO2"]
    assert plays.matrix.dtype == np.int32
    report = plays.report
    assert (report.rows_read, report.plays, report.duplicates_summed) == (5, 3, 1)
    assert (report.zero_count_rows, report.total_count, report.skipped_lines) == (1, 13, 0)


def test_many_blocks_give_the_same_matrix(tmp_path, rng):
    users = rng.integers(0, 300, 20_000)
    songs = rng.integers(0, 500, 20_000)
    counts = rng.integers(1, 50, 20_000)
    lines = [f"u{u}\ts{s}\t{c}" for u, s, c in zip(users, songs, counts, strict=True)]
    path = write_lines(tmp_path / "t.txt", lines)
    small = read_plays(path, block_size=4096)  # dozens of blocks, dictionaries unified
    whole = read_plays(path)
    assert dense(small) == dense(whole)
    expected = {}
    for u, s, c in zip(users, songs, counts, strict=True):
        expected[(f"u{u}", f"s{s}")] = expected.get((f"u{u}", f"s{s}"), 0) + int(c)
    assert dense(whole) == expected


def test_csv_with_named_columns(tmp_path):
    path = write_lines(
        tmp_path / "plays.csv",
        ["listener,track,n,extra", "a,t1,2,x", "b,t1,1,y", "a,t2,4,z", "a,t1,1,w"],
    )
    plays = read_plays(path, format="csv", user_col="listener", song_col="track", count_col="n")
    assert dense(plays) == {("a", "t1"): 3, ("b", "t1"): 1, ("a", "t2"): 4}


def test_parquet_with_integer_ids_and_float_counts(tmp_path):
    path = tmp_path / "plays.parquet"
    table = pa.table({"u": [10, 11, 10], "s": ["x", "y", "x"], "plays": [1.0, 2.0, 3.0]})
    pq.write_table(table, path)
    plays = read_plays(path, format="parquet", user_col="u", song_col="s", count_col="plays")
    assert dense(plays) == {("10", "x"): 4, ("11", "y"): 2}


@pytest.mark.parametrize(
    ("lines", "line_no", "reason"),
    [
        (["a\ts\t1", "b\ts"], 2, "expected 3 tab-separated fields"),
        (["a\ts\t1", "b\ts\t1\t9"], 2, "got 4"),
        (["a\ts\t1", "a\ts\t1", "b\ts\tmany"], 3, "'many' is not a non-negative integer"),
        (["a\ts\t1.5"], 1, "'1.5' is not a non-negative integer"),
        (["a\ts\t1", "b\ts\t-3"], 2, "negative count -3"),
        (["a\ts\t1", "\ts\t2"], 2, "empty user id"),
        (["a\ts\t1", "b\t\t2"], 2, "empty song id"),
        (["a\ts\t1", "b\ts\t"], 2, "missing count"),
        (["a\ts\t1", "", "b\ts\t1"], 2, "empty line"),
        (["a\ts\t99999999999"], 1, "too large"),
    ],
)
def test_bad_line_named_with_file_and_line(tmp_path, lines, line_no, reason):
    path = write_lines(tmp_path / "t.txt", lines)
    with pytest.raises(PlaysFormatError) as error:
        read_plays(path)
    message = str(error.value)
    assert message.startswith(f"{path}:{line_no}: ")
    assert reason in message
    assert "--on-bad-lines skip" in message


def test_line_numbers_after_malformed_lines_and_across_blocks(tmp_path):
    lines = [f"u{i}\ts{i % 7}\t{i % 5 + 1}" for i in range(5000)]
    lines[10] = "broken"  # malformed: shifts every later row
    lines[20] = "u\ts\tx\ty"  # malformed too
    lines[4321] = "u9\ts9\tNaN"  # bad count, far into the file
    path = write_lines(tmp_path / "t.txt", lines)
    plays = read_plays(path, on_bad_lines="skip", block_size=2048)
    assert plays.report.skipped_lines == 3
    assert [e.split(":")[0] for e in plays.report.skipped_examples] == [
        "line 11",
        "line 21",
        "line 4322",
    ]
    assert plays.report.rows_read == 5000
    assert plays.matrix.sum() == sum(i % 5 + 1 for i in range(5000) if i not in (10, 20, 4321))


def test_csv_line_numbers_count_the_header(tmp_path):
    path = write_lines(tmp_path / "p.csv", ["user,song,count", "a,s,1", "b,s,x"])
    with pytest.raises(PlaysFormatError, match=r"p\.csv:3: count 'x'"):
        read_plays(path, format="csv")


def test_skip_counts_and_keeps_good_lines(tmp_path):
    path = write_lines(tmp_path / "t.txt", ["a\ts\t1", "b\ts", "c\ts\t-1", "d\ts\t2", "e\tt\tz"])
    plays = read_plays(path, on_bad_lines="skip")
    assert dense(plays) == {("a", "s"): 1, ("d", "s"): 2}
    assert plays.report.skipped_lines == 3
    assert plays.report.skipped_examples[1] == "line 3: negative count -1"
    assert "skipped 3 bad lines" in plays.report.summary()


def test_empty_file_and_unknown_column(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(PlaysFormatError, match="empty"):
        read_plays(empty)
    path = write_lines(tmp_path / "p.csv", ["user,song,plays", "a,s,1"])
    with pytest.raises(PlaysFormatError, match="no column 'count' for the count.*'plays'"):
        read_plays(path, format="csv")
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.table({"user": ["a"], "song": ["s"]}), parquet)
    with pytest.raises(PlaysFormatError, match="no column 'count'"):
        read_plays(parquet, format="parquet")


def test_parquet_bad_rows_are_numbered(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(
        pa.table({"user": ["a", "b", "c"], "song": ["s", "s", "s"], "count": [1, -2, 3]}), path
    )
    with pytest.raises(PlaysFormatError, match=r"p\.parquet:2: negative count -2"):
        read_plays(path, format="parquet")
    assert read_plays(path, format="parquet", on_bad_lines="skip").matrix.sum() == 4


def test_only_bad_lines_is_an_error_even_when_skipping(tmp_path):
    path = write_lines(tmp_path / "t.txt", ["a\ts", "b\ts\tx"])
    with pytest.raises(PlaysFormatError, match="no plays were read"):
        read_plays(path, on_bad_lines="skip")


def test_workspace_round_trip(tmp_path):
    path = write_lines(tmp_path / "t.txt", ["a\ts1\t2", "b\ts2\t3", "a\ts2\t1"])
    plays = read_plays(path)
    workspace = Workspace(tmp_path / "w")
    save_interactions(plays, workspace)
    loaded = load_interactions(workspace)
    assert dense(loaded) == dense(plays)
    assert loaded.report.plays == 3
    assert not list((tmp_path / "w" / "plays").glob(".*part"))  # no temporary files left


def test_the_format_is_read_from_the_file_not_its_name(tmp_path):
    """A Parquet file named .txt, triplets named .csv, a CSV with a header: each is
    read as what it is, and the report says what was chosen and why."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from coldtune.data.plays import detect_plays_format

    parquet = tmp_path / "plays.txt"
    pq.write_table(pa.table({"user": ["u1", "u2"], "song": ["s1", "s1"], "count": [3, 4]}), parquet)
    triplets = tmp_path / "plays.csv"
    triplets.write_text("u1\ts1\t3\nu2\ts1\t4\n")
    csv = tmp_path / "plays.dat"
    csv.write_text("user,song,count\nu1,s1,3\nu2,s1,4\n")
    for path, expected in ((parquet, "parquet"), (triplets, "triplets"), (csv, "csv")):
        assert detect_plays_format(path)[0] == expected
        plays = read_plays(path)
        assert plays.report.format.startswith(expected + ": ")
        assert plays.matrix.sum() == 7 and list(plays.song_ids) == ["s1"]
    assert read_plays(csv, format="csv").report.format == "csv"  # told, not detected


def test_import_coldtune_and_the_cli_load_neither_torch_nor_pyspark():
    import subprocess
    import sys

    code = (
        "import sys, coldtune, coldtune.cli\n"
        "from coldtune import WeightedMatrixFactorization, read_plays\n"
        "heavy = [m for m in ('torch', 'pyspark', 'faiss', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
