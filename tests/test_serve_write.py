"""The service writes, safely: POST /api/songs adds a new release only with the write
token, survives a restart, and loses nothing under concurrent uploads."""

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from coldtune.errors import ParameterError
from coldtune.serve import create_app
from coldtune.steps.catalogue import load_catalogue, read_releases
from coldtune.workspace import Workspace

TOKEN = "a-write-token-for-the-tests"


@pytest.fixture()
def workspace(small_workspace, tmp_path):
    root = tmp_path / "W"
    shutil.copytree(small_workspace.root, root, copy_function=os.link)
    return Workspace(root)


@pytest.fixture()
def clip(workspace):
    catalogue = load_catalogue(workspace)
    song = str(catalogue.song_ids[catalogue.cold][0])
    return song, catalogue.clips[song].read_bytes()


def upload(client, song_id, data, *, token=TOKEN, **fields):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(
        "/api/songs",
        files={"file": ("clip.ogg", data, "audio/ogg")},
        data={"song_id": song_id, **fields},
        headers=headers,
    )


def test_a_read_only_service_has_no_write_route(workspace, clip):
    with TestClient(create_app(workspace)) as client:
        assert upload(client, "SONEWSONG000000001", clip[1]).status_code == 405
        assert "post" not in client.get("/openapi.json").json()["paths"]["/api/songs"]
    with pytest.raises(ParameterError, match="at least 16 characters"):
        create_app(workspace, write_token="short")


def test_writing_needs_the_token_and_the_song_answers_like_any_other(workspace, clip):
    original, data = clip
    with TestClient(create_app(workspace, write_token=TOKEN)) as client:
        missing = upload(client, "SONEWSONG000000001", data, token=None)
        assert missing.status_code == 401 and "write token" in missing.json()["detail"]
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = upload(client, "SONEWSONG000000001", data, token="not-the-token-at-all")
        assert wrong.status_code == 403
        assert read_releases(workspace) == []

        body = upload(client, "SONEWSONG000000001", data, artist="Nova", title="First").json()
        assert body["added"] is True and body["song"]["cold"] is True
        assert body["song"]["artist"] == "Nova" and body["song"]["clip_url"]
        assert body["similar"][0]["song_id"] == original  # the same audio
        assert client.get("/api/songs/SONEWSONG000000001").json()["title"] == "First"
        assert client.get("/api/songs", params={"q": "nova first"}).json()["songs"]
        assert client.get("/api/songs/SONEWSONG000000001/clip").content == data
        again = upload(client, "SONEWSONG000000001", data).json()
        assert again["added"] is False and len(read_releases(workspace)) == 1

        bad = upload(client, "SONEWSONG000000002", b"not audio at all")
        assert bad.status_code == 422 and "not a usable clip" in bad.json()["detail"]
        badly_named = upload(client, "../escape", data)
        assert badly_named.status_code == 422
        assert len(read_releases(workspace)) == 1
        assert sorted(p.name for p in (workspace.root / "uploads").iterdir()) == [
            "SONEWSONG000000001.ogg"
        ]


def test_parallel_uploads_lose_nothing_and_survive_a_restart(workspace, clip):
    _, data = clip
    ids = [f"SONEWPARALLEL{i:05d}" for i in range(8)]
    with TestClient(create_app(workspace, write_token=TOKEN)) as client:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda song: upload(client, song, data), ids))
        assert [a.status_code for a in answers] == [200] * 8
    assert sorted(row["song_id"] for row in read_releases(workspace)) == ids
    with TestClient(create_app(workspace)) as client:  # a restart, read-only
        health = client.get("/api/health").json()
        for song in ids:
            assert client.get(f"/api/songs/{song}").json()["cold"] is True
    assert health["songs"] == len(load_catalogue(workspace)) == 150 + 8
