"""The service's contract: the pydantic models of what each route takes and returns,
the one error body, and the constraints of its parameters, as its OpenAPI document
(/openapi.json) states them for generated clients.

Every response model forbids fields it does not name, so a route that returns more
than its model says fails its tests (a 500) instead of a client silently missing it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from coldtune.catalogue import ID_PATTERN, MAX_ID_LENGTH, MAX_PLAY_COUNT

ID_SCHEMA = {"type": "string", "pattern": ID_PATTERN.pattern, "minLength": 1,
             "maxLength": MAX_ID_LENGTH}  # fmt: skip
"""A song or user id: letters, digits, `_ . : -`, no `..`, at most 128 characters."""

SONG_ID = Annotated[
    str,
    # stated, not enforced here: the catalogue's check_id answers a malformed id with 400
    Path(
        description="A song id (letters, digits, `_ . : -`, no `..`, at most 128 characters).",
        json_schema_extra={"pattern": ID_PATTERN.pattern, "maxLength": MAX_ID_LENGTH},
    ),
]
USER_ID = Annotated[
    str,
    Path(
        description="A user id (letters, digits, `_ . : -`, no `..`, at most 128 characters).",
        json_schema_extra={"pattern": ID_PATTERN.pattern, "maxLength": MAX_ID_LENGTH},
    ),
]

N = Annotated[int, Query(ge=1, le=500, description="How many songs or users.")]

WORD = r"[^\s\x1c-\x1f\x85]"
"""A character that is not whitespace to Python's str.split (\\s of JSON Schema's regex
leaves out \\x1c-\\x1f and \\x85): a query must hold one, so it has a word to search for."""

QUERY = Annotated[
    str,
    Query(min_length=1, max_length=200, pattern=WORD, description="Artist or title words."),
]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Answer):
    """Every 4xx answer: one sentence saying what was wrong and what to do."""

    detail: str = Field(examples=["unknown song id 'SONOPE': not among the 150 songs ..."])


class Song(_Answer):
    song_id: str
    artist: str = Field(description="Empty when unknown.")
    title: str = Field(description="Empty when unknown.")
    cold: bool = Field(description="Nobody has played it: its factors come from its audio.")
    has_clip: bool
    clip_url: str | None = Field(description="Where its clip is; null when it has none.")


class SimilarSong(Song):
    similarity: float = Field(description="Cosine of the usage patterns, -1 to 1.")


class RecommendedSong(Song):
    score: float = Field(description="The predicted preference x_u^T y.")
    held_out_plays: int = Field(
        description="The user's plays of this cold song that the split hid (a hit the "
        "system could not have known); 0 for a warm song."
    )


class ScoredSong(Song):
    score: float = Field(description="The predicted preference x_u^T y.")


class User(_Answer):
    user_id: str
    songs_played: int
    top_songs: list[str] = Field(description='Their most played songs, "Artist - Title".')


class LikelyListener(User):
    score: float = Field(description="The predicted preference x_u^T y for the song.")


class Health(_Answer):
    status: Literal["ok"]
    songs: int
    cold_songs: int
    users: int
    model: str = Field(description="The clip model; empty when the workspace has none.")
    factors: int
    max_upload_bytes: int


class SearchResults(_Answer):
    query: str
    songs: list[Song]


class SimilarSongs(_Answer):
    """Table 4: the nearest songs by WMF's factors and by the factors predicted from
    audio; a list is empty when the song has no usage pattern or no audio."""

    song: Song
    usage: list[SimilarSong]
    predicted: list[SimilarSong]


class UserRecommendations(_Answer):
    user: User
    songs: list[RecommendedSong]


SONG_KEY = Annotated[str, Field(pattern=ID_PATTERN.pattern, max_length=MAX_ID_LENGTH)]
PLAY_COUNT = Annotated[float, Field(ge=0, le=MAX_PLAY_COUNT, allow_inf_nan=False)]


class ListenerPlays(BaseModel):
    """A new listener: their plays, and what to return."""

    plays: Annotated[
        dict[SONG_KEY, PLAY_COUNT],
        # pydantic writes the key pattern as patternProperties, which lets a schema
        # reader send keys that do not match it; propertyNames says what a key may be
        WithJsonSchema(
            {
                "type": "object",
                "propertyNames": ID_SCHEMA,
                "additionalProperties": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": MAX_PLAY_COUNT,
                },
                "minProperties": 1,
                "maxProperties": 100_000,
            }
        ),
    ] = Field(
        min_length=1,
        max_length=100_000,
        description='Play count per song id, e.g. {"SOAAAGQ12A8C1420C8": 3}; at least one '
        "of them a warm song (one with plays in the catalogue) with a count above 0.",
    )
    n: int = Field(default=20, ge=1, le=500, description="How many songs.")
    cold_only: bool = Field(default=False, description="Only songs nobody has played.")


class ListenerRecommendations(_Answer):
    songs: list[ScoredSong]
    factors: list[float] = Field(description="The listener's folded-in factors x_u.")
    used: list[str] = Field(description="The warm songs the fold-in read.")
    unknown: list[str] = Field(description="Song ids not in the catalogue (not read).")
    cold_played: list[str] = Field(description="Played cold songs (no WMF factors: not read).")


class MapPlace(_Answer):
    x: float
    y: float
    near: str = Field(description='The nearest song, "Artist - Title".')


class ClipAnswer(_Answer):
    filename: str | None
    model: str
    factors: list[float]
    similar: list[SimilarSong]
    listeners: list[LikelyListener]
    map: MapPlace | None = Field(description="Where it lands on the map; null with no map.")
    seconds: float


class AddedSong(_Answer):
    song: Song
    added: bool = Field(description="False when the id was already in the catalogue.")
    model: str
    factors: list[float]
    similar: list[SimilarSong]
    listeners: list[LikelyListener]


class SongMap(_Answer):
    """The map's points as web/map.js draws them: one entry per song in each list."""

    ids: list[str]
    artists: list[str]
    titles: list[str]
    cold: list[bool]
    x: list[float]
    y: list[float]
    clips: list[str | None]
    tags: list[str] = Field(description="The map's most frequent tags, then its colour tags.")
    song_tags: list[list[int]] = Field(description="Per song, indices into `tags`.")
    colour_tags: list[int] = Field(description="Indices into `tags`.")


WHEN = {
    400: "An id that is not shaped like one, or a parameter the catalogue cannot use.",
    401: "No write token (`Authorization: Bearer <token>`).",
    403: "A wrong write token.",
    404: "An unknown song or user id.",
    413: "An upload over the service's limit.",
    422: "A parameter or field outside its bounds, or missing.",
}


NO_WARM_PLAYS = (
    "None of the plays is of a warm song with a count above 0: the fold-in needs one "
    "(the schema cannot know which songs are warm)."
)
BAD_UPLOAD = (
    "Not a usable clip (not audio, empty, truncated, silent, under 3 s), or a missing or "
    "malformed field or parameter."
)


def errors(*statuses: int, why: dict[int, str] | None = None) -> dict:
    """`responses=` of a route: ErrorBody for each status, described by `why` (the
    route's own words) or else by WHEN."""
    why = why or {}
    return {
        status: {"model": ErrorBody, "description": why.get(status, WHEN[status])}
        for status in statuses
    }


def file_response(media_types: list[str]) -> dict:
    """`responses=` entry of a route that answers with a file's bytes."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "description": "The file's bytes, as they were stored.",
        "content": {media_type: binary for media_type in media_types},
    }


def drop_unreachable_422(schema: dict) -> dict:
    """FastAPI documents a 422 with its own body (a list of problems) on every route with
    a parameter; this service answers 422 with ErrorBody and says so on the routes that
    can give one, so the 422s FastAPI added by itself (on routes whose parameters
    cannot fail validation) are removed, with the schemas only they used."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            body = operation.get("responses", {}).get("422", {})
            ref = body.get("content", {}).get("application/json", {}).get("schema", {})
            if ref.get("$ref", "").endswith("/HTTPValidationError"):
                del operation["responses"]["422"]
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema
