"""workspace.fingerprint: the one content hash of what an artefact was made from."""

import numpy as np

from coldtune.workspace import fingerprint


def test_the_fingerprint_follows_file_contents_not_their_folder(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "plays.txt").write_text("u1\ts1\t3\n")
    a = fingerprint([tmp_path / "a" / "plays.txt"], root=tmp_path / "a")
    assert a == fingerprint([tmp_path / "b" / "plays.txt"], root=tmp_path / "b")
    (tmp_path / "b" / "plays.txt").write_text("u1\ts1\t4\n")
    assert a != fingerprint([tmp_path / "b" / "plays.txt"], root=tmp_path / "b")
    missing = fingerprint([tmp_path / "a" / "gone.txt"], root=tmp_path / "a")
    assert missing != fingerprint([], root=tmp_path / "a")  # absent is not nothing


def test_the_fingerprint_of_arrays_sees_order_values_shape_and_settings():
    ids, factors = np.array(["s1", "s2", "s3"]), np.arange(6, dtype=np.float32).reshape(3, 2)
    base = fingerprint(arrays=(ids, factors))
    assert base == fingerprint(arrays=(list(ids), factors.copy()))
    assert base != fingerprint(arrays=(ids[[1, 0, 2]], factors))  # the same ids, reordered
    changed = factors.copy()
    changed[2, 1] += 1e-3
    assert base != fingerprint(arrays=(ids, changed))
    assert base != fingerprint(arrays=(ids, factors.reshape(2, 3)))
    assert base != fingerprint(arrays=(ids, factors), seed=1)
    assert fingerprint(arrays=(ids, factors), seed=1) == fingerprint(arrays=(ids, factors), seed=1)
