"""The service: a workspace's songs, users and clip model behind a JSON API and a page.

    app = create_app(Workspace("runs/demo"))   # uvicorn.run(app, host="127.0.0.1")

The catalogue (factors, the clip model, the map) is loaded once, in the lifespan
handler, never at import time, so a test builds an app on a temporary workspace.
Bad input never takes the service down: it is answered with a 4xx and a message
(`{"detail": "..."}`) that says what was wrong:

- 400: an id that is not shaped like one (path characters, spaces), a bad parameter;
- 404: an unknown song or user id;
- 413: an upload over the limit (`max_upload_bytes`, 16 MiB by default);
- 422: an upload that is not a usable clip (not audio, empty, truncated, silent, under
  3 s), or a missing or malformed form field.

The OpenAPI document (/openapi.json) states all of this: each route's response model and
error statuses (coldtune/serve/schemas.py), and its parameters' bounds, so that what it
allows is accepted (tests/test_serve_openapi.py fuzzes it).

Endpoints are synchronous functions: FastAPI runs them in its thread pool, so a clip
being decoded does not hold up "similar songs" requests.
"""

from __future__ import annotations

import contextlib
import csv
import hmac
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline

from coldtune.audio.decode import ClipRejected
from coldtune.catalogue import ID_PATTERN, MAX_ID_LENGTH
from coldtune.errors import ColdtuneError, NotFoundError, ParameterError
from coldtune.eval.song_map import map_data, web_asset
from coldtune.serve.schemas import (
    BAD_UPLOAD,
    NO_WARM_PLAYS,
    QUERY,
    SONG_ID,
    USER_ID,
    AddedSong,
    ClipAnswer,
    Health,
    ListenerPlays,
    ListenerRecommendations,
    N,
    SearchResults,
    SimilarSongs,
    Song,
    SongMap,
    UserRecommendations,
    drop_unreachable_422,
    errors,
    file_response,
)
from coldtune.steps.analyses import song_map, song_tag_sets
from coldtune.steps.catalogue import inputs_key, load_catalogue
from coldtune.threads import one_thread
from coldtune.workspace import Workspace, atomic_path, read_json

MAX_UPLOAD_BYTES = 16 * 1024 * 1024
"""16 MiB: a 30 s clip is 0.5 MB as mp3 and 5.3 MB as 16-bit stereo WAV at 44.1 kHz; a
whole song as mp3 fits too (its middle 30 s are used)."""

MIN_TOKEN_LENGTH = 16
"""A write token shorter than this is refused: it would be guessed."""

MAP_NEIGHBOURS = 10
"""A new clip lands on the map at the similarity-weighted mean of the positions of
its nearest songs: t-SNE places the songs it was given, not new ones."""

AUDIO_TYPES = {".ogg": "audio/ogg", ".mp3": "audio/mpeg", ".wav": "audio/wav",
               ".flac": "audio/flac", ".opus": "audio/ogg", ".m4a": "audio/mp4"}  # fmt: skip
OTHER_AUDIO = "application/octet-stream"
"""The media type of a clip whose suffix names none of AUDIO_TYPES (an upload's
".audio"): "audio/*" is a range a request may accept, not a type a response has."""


BEARER = HTTPBearer(auto_error=False, description="The service's write token.")
"""`Authorization: Bearer <token>` of the write routes (checked by the route: 401/403)."""


class _TooLarge(Exception):
    pass


class UploadLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before it is parsed,
    by its Content-Length if it has one, else as soon as the bytes read pass the limit
    (the app's own answer to the cut-off body, a 400 from the form parser, is replaced)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send)
        received = 0
        over = refused = False

        async def counted():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise _TooLarge
            return message

        async def watched(message):
            nonlocal refused
            if not over:
                await send(message)
            elif not refused and message["type"] == "http.response.start":
                refused = True
                await self._refuse(send)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not refused:
                await self._refuse(send)

    async def _refuse(self, send):
        body = json.dumps(
            {
                "detail": f"upload too large: the limit is {self.max_bytes:,} bytes "
                f"({self.max_bytes / 2**20:g} MiB); send a 30 s clip"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())],
            }
        )  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def create_app(
    workspace: Workspace | str | os.PathLike,
    *,
    model: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    write_token: str | None = None,
) -> FastAPI:
    """The service on `workspace`, with the clip model `model` (default: the best one).

    Nothing is loaded until the app starts (its lifespan): creating it is instant.
    write_token : with one, `POST /api/songs` adds new songs, for requests that carry
        `Authorization: Bearer <write_token>` (401 without it, 403 with another); without
        one the service has no route that writes.
    """
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if max_upload_bytes < 1:
        raise ParameterError(f"max_upload_bytes must be >= 1, got {max_upload_bytes!r}")
    if write_token is not None and len(write_token) < MIN_TOKEN_LENGTH:
        raise ParameterError(
            f"the write token must have at least {MIN_TOKEN_LENGTH} characters; make one "
            "with `python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # each request's work is small (one clip, a few thousand dot products): one thread
        # per request, the thread pool serving requests side by side (coldtune.threads)
        with one_thread():
            catalogue = load_catalogue(workspace, model=model)
            app.state.catalogue = catalogue
            app.state.map = _load_map(workspace, catalogue)
            yield

    # FastAPI's own /docs and /redoc load their scripts from a public CDN, which an
    # offline or firewalled machine cannot reach; fastapi-offline's serve them from the
    # package, under /static-offline-docs
    app = FastAPIOffline(
        title="coldtune",
        summary="Songs nobody has played yet: predicted factors, similar songs, listeners.",
        description=(
            "Content-based music recommendation (van den Oord, Dieleman, Schrauwen 2013) on "
            f"one workspace. Uploads are limited to {max_upload_bytes:,} bytes."
        ),
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes)
    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            drop_unreachable_422(default_openapi())
        return app.openapi_schema

    app.openapi = openapi

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, error: NotFoundError):
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(ClipRejected)
    async def rejected(request: Request, error: ClipRejected):
        return JSONResponse({"detail": f"not a usable clip: {error}"}, status_code=422)

    @app.exception_handler(ColdtuneError)
    async def bad_request(request: Request, error: ColdtuneError):
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        # FastAPI's default is a list of objects; one sentence reads better on a page
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        )
        return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=422)

    def song(request: Request, row: int) -> dict:
        described = request.app.state.catalogue.describe(row)
        described["clip_url"] = (
            f"/api/songs/{described['song_id']}/clip" if described["has_clip"] else None
        )
        return described

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse(_page())

    @app.get("/map.js", include_in_schema=False)
    def map_script():
        return Response(web_asset("map.js"), media_type="text/javascript")

    @app.get("/api/health", tags=["service"], response_model=Health)
    def health(request: Request) -> dict:
        """What the service holds: songs, cold songs, users, the clip model."""
        catalogue = request.app.state.catalogue
        return {
            "status": "ok",
            "songs": len(catalogue),
            "cold_songs": int(catalogue.cold.sum()),
            "users": catalogue.n_users,
            "model": catalogue.model_name,
            "factors": int(catalogue.user_factors.shape[1]),
            "max_upload_bytes": max_upload_bytes,
        }

    @app.get("/api/songs", tags=["songs"], response_model=SearchResults, responses=errors(422))
    def search(request: Request, q: QUERY, n: N = 20) -> dict:
        """Songs whose artist, title or id contains every word of `q`."""
        rows = request.app.state.catalogue.search(q, n=n)
        return {"query": q, "songs": [song(request, row) for row in rows]}

    @app.get(
        "/api/songs/{song_id}", tags=["songs"], response_model=Song, responses=errors(400, 404)
    )
    def get_song(request: Request, song_id: SONG_ID) -> dict:
        """One song: artist, title, whether it is cold, where its clip is."""
        return song(request, request.app.state.catalogue.song_row(song_id))

    @app.get(
        "/api/songs/{song_id}/similar",
        tags=["songs"],
        response_model=SimilarSongs,
        responses=errors(400, 404, 422),
    )
    def similar(request: Request, song_id: SONG_ID, n: N = 10) -> dict:
        """Table 4: the songs with the closest usage patterns, by WMF's factors ("usage")
        and by the factors the clip model predicts from audio ("predicted")."""
        catalogue = request.app.state.catalogue
        row = catalogue.song_row(song_id)
        found = catalogue.similar(song_id, n=n)
        return {
            "song": song(request, row),
            **{
                space: [
                    song(request, nb.index) | {"similarity": round(nb.similarity, 6)}
                    for nb in neighbours
                ]
                for space, neighbours in found.items()
            },
        }

    @app.get(
        "/api/songs/{song_id}/clip",
        tags=["songs"],
        response_class=FileResponse,
        responses={
            200: file_response([*sorted(set(AUDIO_TYPES.values())), OTHER_AUDIO]),
            **errors(400, 404, why={404: "An unknown song id, or a song without a clip."}),
        },
    )
    def clip(request: Request, song_id: SONG_ID):
        """The song's audio clip."""
        path = request.app.state.catalogue.clip_path(song_id)
        return FileResponse(path, media_type=AUDIO_TYPES.get(path.suffix.lower(), OTHER_AUDIO))

    @app.get(
        "/api/users/{user_id}/recommendations",
        tags=["users"],
        response_model=UserRecommendations,
        responses=errors(400, 404, 422, why={404: "An unknown user id."}),
    )
    def recommendations(
        request: Request,
        user_id: USER_ID,
        n: N = 20,
        cold_only: Annotated[bool, Query(description="Only songs nobody has played.")] = False,
    ) -> dict:
        """The songs with the highest predicted preference x_u^T y for the user, never one
        they played: warm songs by WMF's factors, cold songs by predicted ones."""
        catalogue = request.app.state.catalogue
        u = catalogue.user_row(user_id)
        picks = catalogue.recommend(user_id, n=n, cold_only=cold_only)
        return {
            "user": catalogue.user_summary(u),
            "songs": [
                song(request, pick["row"])
                | {"score": round(pick["score"], 6), "held_out_plays": pick["held_out_plays"]}
                for pick in picks
            ],
        }

    @app.post(
        "/api/recommendations",
        tags=["users"],
        response_model=ListenerRecommendations,
        responses=errors(400, 413, 422, why={400: NO_WARM_PLAYS}),
    )
    def new_listener(request: Request, listener: ListenerPlays) -> dict:
        """Recommendations for a listener the service has never seen, from their plays:
        folded in with the song factors fixed (eq. 3 with eq. 2's confidences), then the
        songs with the highest x_u^T y, never one they played. Unknown song ids are
        named in `unknown`; plays of cold songs (no WMF factors) in `cold_played`."""
        catalogue = request.app.state.catalogue
        found = catalogue.recommend_for_plays(
            listener.plays, n=listener.n, cold_only=listener.cold_only
        )
        return {
            "songs": [
                song(request, pick["row"]) | {"score": round(pick["score"], 6)}
                for pick in found["songs"]
            ],
            "factors": [round(float(v), 6) for v in found["factors"]],
            "used": found["used"],
            "unknown": found["unknown"],
            "cold_played": found["cold_played"],
        }

    @app.post(
        "/api/clips",
        tags=["clips"],
        response_model=ClipAnswer,
        responses=errors(413, 422, why={422: BAD_UPLOAD}),
    )
    def embed_clip(
        request: Request,
        file: Annotated[UploadFile, File(description="An audio file (mp3, ogg, wav, flac...).")],
        n: N = 10,
    ) -> dict:
        """A brand-new clip: its predicted factors, the songs whose predicted usage
        patterns are closest, the users most likely to enjoy it, and where it lands on
        the map."""
        catalogue = request.app.state.catalogue
        start = time.perf_counter()
        factors = _embed_upload(catalogue, file, max_upload_bytes)
        neighbours = catalogue.similar_to_factors(factors, n=max(n, MAP_NEIGHBOURS))
        listeners = catalogue.listeners(factors, n=n)
        return {
            "filename": file.filename,
            "model": catalogue.model_name,
            "factors": [round(float(v), 6) for v in factors],
            "similar": [
                song(request, nb.index) | {"similarity": round(nb.similarity, 6)}
                for nb in neighbours[:n]
            ],
            "listeners": [
                catalogue.user_summary(u) | {"score": round(score, 6)} for u, score in listeners
            ],
            "map": _place(request.app.state.map, catalogue, neighbours[:MAP_NEIGHBOURS]),
            "seconds": round(time.perf_counter() - start, 4),
        }

    if write_token is not None:
        writing = threading.Lock()  # one added song at a time: extract, list, reload

        def writer(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
        ) -> None:
            if credentials is None:
                raise HTTPException(
                    401,
                    "writing needs the write token: send Authorization: Bearer <token>",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if not hmac.compare_digest(credentials.credentials.encode(), write_token.encode()):
                raise HTTPException(403, "wrong write token")

        @app.post(
            "/api/songs",
            tags=["songs"],
            dependencies=[Depends(writer)],
            response_model=AddedSong,
            responses=errors(401, 403, 413, 422, why={422: BAD_UPLOAD}),
        )
        def add_song(
            request: Request,
            file: Annotated[UploadFile, File(description="The song's clip (mp3, ogg, wav...).")],
            song_id: Annotated[str, Form(pattern=ID_PATTERN.pattern, max_length=MAX_ID_LENGTH)],
            artist: Annotated[str, Form(max_length=500)] = "",
            title: Annotated[str, Form(max_length=500)] = "",
            n: N = 10,
        ) -> dict:
            """A new release: its clip is kept in W/uploads, its features and predicted
            factors join the catalogue as a cold song (as `coldtune add` does), and the
            answer holds its factors, similar songs and likely listeners. A song id the
            catalogue has already answers with that song (`added`: false)."""
            with writing:
                catalogue = request.app.state.catalogue
                added = song_id not in catalogue.songs
                if added:
                    _add_upload(workspace, file, song_id, artist, title, max_upload_bytes, model)
                    catalogue = load_catalogue(workspace, model=model)
                    request.app.state.catalogue = catalogue
            row = catalogue.song_row(song_id)
            factors = catalogue.predicted_factors[row]
            return {
                "song": song(request, row),
                "added": added,
                "model": catalogue.model_name,
                "factors": [round(float(v), 6) for v in factors],
                "similar": [
                    song(request, nb.index) | {"similarity": round(nb.similarity, 6)}
                    for nb in catalogue.similar(song_id, n=n)["predicted"]
                ],
                "listeners": [
                    catalogue.user_summary(u) | {"score": round(score, 6)}
                    for u, score in catalogue.listeners(factors, n=n)
                ],
            }

    @app.get(
        "/api/map",
        tags=["songs"],
        response_model=SongMap,
        responses=errors(404, why={404: "No map: fewer than 4 songs with audio."}),
    )
    def song_map(request: Request) -> dict:
        """The song map (t-SNE of predicted usage patterns) as the page draws it."""
        state = request.app.state.map
        if state is None:
            raise NotFoundError("no map: fewer than 4 songs with audio")
        return state["data"]

    return app


_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,5}$")


def _embed_upload(catalogue, file: UploadFile, max_bytes: int) -> np.ndarray:
    """Copy the upload to a temporary file (the decoders read files) and predict."""
    suffix = Path(file.filename or "").suffix
    suffix = suffix if _SAFE_SUFFIX.match(suffix) else ".audio"
    with tempfile.TemporaryDirectory(prefix="coldtune-upload-") as folder:
        path = Path(folder) / f"clip{suffix}"
        _copy_upload(file, path, max_bytes)
        return catalogue.embed_file(path)


def _add_upload(
    workspace: Workspace,
    file: UploadFile,
    song_id: str,
    artist: str,
    title: str,
    max_bytes: int,
    model: str | None,
) -> None:
    """Keep the upload as W/uploads/<song id><suffix> (it survives a restart and is the
    song's clip), check that it decodes, then add it as `coldtune add` does."""
    from coldtune.audio.decode import decode_clip
    from coldtune.steps.releases import add_releases

    suffix = Path(file.filename or "").suffix
    suffix = suffix if _SAFE_SUFFIX.match(suffix) else ".audio"
    folder = workspace.root / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{song_id}{suffix}"
    with atomic_path(path) as tmp:
        _copy_upload(file, tmp, max_bytes)
    try:
        decode_clip(path)  # ClipRejected (422) before anything else is written
    except ClipRejected:
        path.unlink(missing_ok=True)
        raise
    manifest = folder / f".{song_id}.manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("song_id", "path", "artist", "title"),
                                      (song_id, path.name, artist, title)])  # fmt: skip
    try:
        summary = add_releases(workspace, manifest=manifest, model=model, in_process=True)
    finally:
        manifest.unlink(missing_ok=True)
    if summary.extract.rejected_now:
        path.unlink(missing_ok=True)
        raise ClipRejected(f"the clip could not be extracted; see {summary.extract.rejects_path}")


def _copy_upload(file: UploadFile, path: Path, max_bytes: int) -> None:
    size = 0
    with open(path, "wb") as out:
        while chunk := file.file.read(1 << 20):
            size += len(chunk)
            if size > max_bytes:  # the middleware stops bigger bodies; this is a backstop
                raise ParameterError(f"upload too large: the limit is {max_bytes:,} bytes")
            out.write(chunk)


def _load_map(workspace: Workspace, catalogue) -> dict | None:
    """The map of W/results/map/map.json if it was made with this clip model, else a
    new one (written there too); with song positions by id, for placing new clips."""
    path = workspace.results_dir / "map" / "map.json"
    saved = read_json(path, what="", hint="") if path.exists() else None
    if saved is None or saved.get("inputs") != inputs_key(workspace, catalogue.model_name):
        if int(catalogue.has_audio.sum()) < 4:
            return None
        saved = song_map(workspace, catalogue=catalogue)
    known = [s for s in saved["song_ids"] if s in catalogue.songs]
    keep = [i for i, s in enumerate(saved["song_ids"]) if s in catalogue.songs]
    rows = catalogue.songs.rows(known)
    xy = np.column_stack([np.array(saved["x"])[keep], np.array(saved["y"])[keep]])
    tag_sets = song_tag_sets(workspace)
    song_tags = [tag_sets.get(song, set()) for song in known]
    data = map_data(
        catalogue,
        rows,
        xy,
        song_tags,
        saved["colour_tags"],
        clip_url=lambda s: f"/api/songs/{s}/clip" if s in catalogue.clips else None,
    )
    position = {int(row): (float(x), float(y)) for row, (x, y) in zip(rows, xy, strict=True)}
    return {"data": data, "position": position}


def _place(state: dict | None, catalogue, neighbours) -> dict | None:
    if state is None:
        return None
    placed = [(state["position"][nb.index], nb.similarity) for nb in neighbours
              if nb.index in state["position"]]  # fmt: skip
    if not placed:
        return None
    xy = np.array([p for p, _ in placed])
    weights = np.maximum(np.array([w for _, w in placed]), 0) + 1e-9
    x, y = (weights[:, None] * xy).sum(axis=0) / weights.sum()
    nearest = neighbours[0].index
    return {"x": round(float(x), 3), "y": round(float(y), 3), "near": catalogue.label(nearest)}


def _page() -> str:
    return web_asset("page.html")
