"""The service's JSON API with TestClient on a workspace of the small demo world: right
answers for good requests, a 4xx with a clear message for bad ones, and the service
still serving after each."""

import io

import numpy as np
import pytest
import soundfile as sf
from conftest import tone
from fastapi.testclient import TestClient

from coldtune.errors import WorkspaceError
from coldtune.serve import MAX_UPLOAD_BYTES, create_app
from coldtune.steps.catalogue import load_catalogue


@pytest.fixture(scope="module")
def client(small_workspace):
    with TestClient(create_app(small_workspace)) as client:
        yield client


@pytest.fixture(scope="module")
def catalogue(small_workspace):
    return load_catalogue(small_workspace)


def wav_bytes(seconds: float, sr: int = 22050) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, sr), sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_health_says_what_is_served(client, catalogue):
    body = client.get("/api/health").json()
    assert body == {
        "status": "ok",
        "songs": 150,
        "cold_songs": 30,
        "users": catalogue.n_users,
        "model": catalogue.model_name,
        "factors": 50,
        "max_upload_bytes": MAX_UPLOAD_BYTES,
    }


def test_search_similar_and_clip_of_a_known_song(client, catalogue):
    row = 12
    song = str(catalogue.song_ids[row])
    found = client.get("/api/songs", params={"q": catalogue.titles[row], "n": 5}).json()["songs"]
    assert song in [s["song_id"] for s in found]
    assert client.get(f"/api/songs/{song}").json() == catalogue.describe(row) | {
        "clip_url": f"/api/songs/{song}/clip"
    }

    body = client.get(f"/api/songs/{song}/similar", params={"n": 4}).json()
    expected = catalogue.similar(song, n=4)
    for space in ("usage", "predicted"):
        assert [s["song_id"] for s in body[space]] == [
            str(catalogue.song_ids[nb.index]) for nb in expected[space]
        ]
        np.testing.assert_allclose(
            [s["similarity"] for s in body[space]],
            [nb.similarity for nb in expected[space]],
            atol=1e-6,
        )

    clip = client.get(f"/api/songs/{song}/clip")
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/ogg"
    assert clip.content == catalogue.clips[song].read_bytes()


def test_recommendations_for_a_user(client, catalogue):
    user = str(catalogue.user_ids[3])
    body = client.get(f"/api/users/{user}/recommendations", params={"n": 6}).json()
    assert body["user"]["user_id"] == user
    expected = catalogue.recommend(user, n=6)
    assert [s["song_id"] for s in body["songs"]] == [
        str(catalogue.song_ids[p["row"]]) for p in expected
    ]
    cold = client.get(f"/api/users/{user}/recommendations", params={"cold_only": True}).json()
    assert len(cold["songs"]) == 20 and all(s["cold"] for s in cold["songs"])


def test_an_uploaded_clip_of_a_catalogue_song_finds_that_song(client, catalogue):
    row = int(np.flatnonzero(catalogue.cold)[2])
    song = str(catalogue.song_ids[row])
    data = catalogue.clips[song].read_bytes()
    response = client.post(
        "/api/clips", files={"file": ("new.ogg", data, "audio/ogg")}, params={"n": 10}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    np.testing.assert_allclose(body["factors"], catalogue.predicted_factors[row], atol=1e-5)
    assert body["similar"][0]["song_id"] == song
    assert body["similar"][0]["similarity"] == pytest.approx(1.0)
    assert len(body["similar"]) == 10 and len(body["listeners"]) == 10
    scores = catalogue.user_factors @ catalogue.predicted_factors[row]
    assert body["listeners"][0]["user_id"] == catalogue.user_ids[int(np.argmax(scores))]
    # it lands among its 10 nearest songs on the map (at their weighted mean)
    map_data = client.get("/api/map").json()
    xy = np.column_stack([map_data["x"], map_data["y"]])
    near = [map_data["ids"].index(s["song_id"]) for s in body["similar"]]
    box_low, box_high = xy[near].min(axis=0), xy[near].max(axis=0)
    assert np.all(box_low - 1e-6 <= [body["map"]["x"], body["map"]["y"]])
    assert np.all([body["map"]["x"], body["map"]["y"]] <= box_high + 1e-6)


def test_a_clip_in_another_format_and_rate_is_accepted(client):
    """The same tone as FLAC at 44,100 Hz and as WAV at 22,050 Hz: resampled, it gets
    the factors the 22,050 Hz one gets (up to the resampler's and float16's rounding)."""
    buffer = io.BytesIO()
    sf.write(buffer, tone(6.0, 44100), 44100, format="FLAC")
    other = client.post("/api/clips", files={"file": ("tone.flac", buffer.getvalue())})
    assert other.status_code == 200, other.text
    same = client.post("/api/clips", files={"file": ("tone.wav", wav_bytes(6.0))})
    a, b = np.array(other.json()["factors"]), np.array(same.json()["factors"])
    assert a.shape == b.shape == (50,)
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert cosine > 0.999 and abs(np.linalg.norm(a) / np.linalg.norm(b) - 1) < 0.01


@pytest.mark.parametrize(
    "name,data,status,message",
    [
        ("empty.ogg", b"", 422, "empty file"),
        ("notes.txt", b"these are not sounds\n" * 40, 422, "not a readable audio file"),
        ("cut.wav", wav_bytes(8.0)[:40_000], 422, "truncated"),
        ("short.wav", wav_bytes(2.0), 422, "too short: 2.00 s"),
        ("silent.wav", b"", 422, ""),  # replaced below: digital silence
    ],
    ids=["empty", "not-audio", "truncated-wav", "under-3-s", "silent"],
)
def test_bad_uploads_get_a_4xx_that_says_why(client, name, data, status, message):
    if name == "silent.wav":
        buffer = io.BytesIO()
        sf.write(buffer, np.zeros(22050 * 5, np.float32), 22050, format="WAV")
        data, message = buffer.getvalue(), "silent"
    response = client.post("/api/clips", files={"file": (name, data)})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert client.get("/api/health").status_code == 200


def test_a_truncated_ogg_of_the_world_is_refused(client, catalogue):
    data = catalogue.clips[str(catalogue.song_ids[0])].read_bytes()
    response = client.post("/api/clips", files={"file": ("cut.ogg", data[: len(data) // 2])})
    assert response.status_code == 422 and "truncated" in response.json()["detail"]


def test_an_upload_over_the_limit_gets_413_with_or_without_a_length(small_workspace):
    limit = 50_000
    with TestClient(create_app(small_workspace, max_upload_bytes=limit)) as client:
        response = client.post("/api/clips", files={"file": ("big.wav", wav_bytes(3.0))})
        assert response.status_code == 413
        assert "the limit is 50,000 bytes" in response.json()["detail"]

        def chunks():  # no Content-Length: the bytes are counted as they come
            yield (
                b"--zzz\r\n"
                b'Content-Disposition: form-data; name="file"; filename="big.wav"\r\n'
                b"Content-Type: audio/wav\r\n\r\n"
            )
            for _ in range(20):
                yield b"x" * 10_000

        response = client.post(
            "/api/clips",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=zzz"},
        )
        assert response.status_code == 413
        assert client.get("/api/health").status_code == 200
        small = client.post("/api/clips", files={"file": ("ok.wav", wav_bytes(1.0))})
        assert small.status_code == 422 and "too short" in small.json()["detail"]


@pytest.mark.parametrize(
    "path,status,message",
    [
        ("/api/songs/SONOPE/similar", 404, "unknown song id 'SONOPE'"),
        ("/api/songs/SONOPE", 404, "unknown song id"),
        ("/api/songs/SONOPE/clip", 404, "unknown song id"),
        ("/api/users/nobody/recommendations", 404, "unknown user id 'nobody'"),
        ("/api/songs/a..b/similar", 400, "is not an id"),
        ("/api/songs/%2e%2e/clip", 400, "is not an id"),
        ("/api/songs/..%2F..%2Fsplit.json/clip", 404, "Not Found"),
        ("/api/songs/x%20y/similar", 400, "is not an id"),
        ("/api/users/..%5Cwindows/recommendations", 400, "is not an id"),
        ("/api/songs?q=", 422, "q"),
        ("/api/songs/SONOPE/similar?n=0", 422, "n"),
        ("/api/songs/SONOPE/similar?n=many", 422, "n"),
    ],
)
def test_bad_ids_and_parameters_get_a_4xx_that_says_why(client, path, status, message):
    response = client.get(path)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert client.get("/api/health").status_code == 200


def test_a_missing_form_field_is_named(client):
    response = client.post("/api/clips", data={"other": "x"})
    assert response.status_code == 422
    assert response.json()["detail"] == "invalid request: body.file: Field required"


def test_the_api_is_documented_and_the_page_served(client):
    schema = client.get("/openapi.json").json()
    for path in (
        "/api/clips",
        "/api/songs",
        "/api/songs/{song_id}/similar",
        "/api/users/{user_id}/recommendations",
        "/api/map",
    ):
        assert path in schema["paths"]
    assert "multipart/form-data" in schema["paths"]["/api/clips"]["post"]["requestBody"]["content"]
    page = client.get("/")
    assert page.status_code == 200 and '<canvas id="map">' in page.text
    assert client.get("/map.js").text.startswith("// The song map")


def test_the_api_docs_need_no_network(client):
    """/docs and /redoc load their scripts from this server (FastAPI's default: a CDN)."""
    import re

    for page, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page)
        assert html.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
        assert f"/static-offline-docs/{script}" in assets, assets
        assert not [url for url in assets if "//" in url], f"{page}: an asset from another host"
        served = client.get(f"/static-offline-docs/{script}")
        assert served.status_code == 200 and len(served.content) > 100_000


def test_nothing_is_loaded_until_the_app_starts(tmp_path):
    app = create_app(tmp_path / "nowhere")  # creating it reads nothing
    with pytest.raises(WorkspaceError, match="coldtune plays ingest"):
        with TestClient(app):
            pass
