"""The OpenAPI document (/openapi.json) is the service's contract, and the service keeps
it: schemathesis sends requests drawn from the document to the app in-process (no
socket) and checks each answer: no 5xx, a documented status, a documented media type,
a body that matches the documented model, and no refusal of a request the document
allows, beyond those the document names (404 for an id the catalogue does not hold,
422 for an upload that is not audio, 400 for a listener with no warm plays).

It fuzzes the write route too, with the token, on a copy of the workspace. The file
takes about 45 s on 2 shared cores once the session's small demo workspace exists
(30 examples for each of the 10 operations; about 10 s of it starts the catalogue).
The examples are derandomized (the same in every run), so a failure reproduces.
"""

import os
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coldtune.serve import create_app
from coldtune.serve.schemas import NO_WARM_PLAYS
from coldtune.steps.catalogue import load_catalogue
from coldtune.workspace import Workspace

TOKEN = "a-write-token-for-the-fuzzer"

ROUTES = {
    ("GET", "/api/health"): {"200"},
    ("GET", "/api/songs"): {"200", "422"},
    ("GET", "/api/songs/{song_id}"): {"200", "400", "404"},
    ("GET", "/api/songs/{song_id}/similar"): {"200", "400", "404", "422"},
    ("GET", "/api/songs/{song_id}/clip"): {"200", "400", "404"},
    ("GET", "/api/users/{user_id}/recommendations"): {"200", "400", "404", "422"},
    ("POST", "/api/recommendations"): {"200", "400", "413", "422"},
    ("POST", "/api/clips"): {"200", "413", "422"},
    ("POST", "/api/songs"): {"200", "401", "403", "413", "422"},
    ("GET", "/api/map"): {"200", "404"},
}

EXAMPLES = 30
"""Requests drawn per operation (positive data: what the document allows)."""


@pytest.fixture(scope="module")
def workspace(small_workspace, tmp_path_factory):
    """A copy: the fuzzer adds songs through the write route."""
    root = tmp_path_factory.mktemp("openapi") / "W"
    shutil.copytree(small_workspace.root, root, copy_function=os.link)
    return Workspace(root)


@pytest.fixture(scope="module")
def known(workspace):
    """Ids the catalogue holds, and a clip's bytes, for the fuzzer to draw from too: an
    id drawn from the pattern alone is almost never a song."""
    catalogue = load_catalogue(workspace)
    warm = [str(s) for s in catalogue.song_ids[~catalogue.cold]]
    songs = [str(s) for s in catalogue.song_ids]
    clip = catalogue.clips[songs[-1]].read_bytes()
    return {
        "song_id": songs,
        "user_id": [str(u) for u in catalogue.user_ids[:50]],
        "warm": warm,
        "clip": clip,
    }


@pytest.fixture(scope="module")
def api(workspace, known):
    app = create_app(workspace, write_token=TOKEN)
    # an empty config: no schemathesis.toml of the machine's is read
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=SchemathesisConfig.from_dict({})
    )

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        # as often, an id the catalogue holds: one drawn from the pattern is never one
        if not path_parameters:
            return st.just(path_parameters)
        (name,) = path_parameters  # one id at most in each route
        return st.one_of(
            st.just(path_parameters), st.sampled_from(known[name]).map(lambda v: {name: v})
        )

    @schema.hook
    def flatmap_body(context, body):
        if context.operation.path == "/api/recommendations" and isinstance(body, dict):
            return st.sampled_from(known["warm"][:20]).flatmap(
                lambda song: st.sampled_from([body, body | {"plays": body["plays"] | {song: 3}}])
            )
        if context.operation.path in ("/api/clips", "/api/songs") and isinstance(body, dict):
            return st.sampled_from([body, body | {"file": known["clip"]}])
        return st.just(body)

    return schema


def only_documented_refusals(ctx, response, case):
    """A request the document allows gets a 2xx, or one of the refusals the document
    names for a reason it cannot state: an unknown id (404), an upload that is not
    audio (422 `not a usable clip`), a listener without warm plays (400)."""
    status = response.status_code
    detail = response.json().get("detail", "") if status >= 400 else ""
    route = (case.method.upper(), case.operation.path)
    if 200 <= status < 300:
        return None
    if status == 404 and "{" in route[1] and detail.startswith(("unknown", "song")):
        return None
    if status == 422 and route[1] in ("/api/clips", "/api/songs"):
        assert detail.startswith("not a usable clip"), detail
        return None
    if status == 400 and route == ("POST", "/api/recommendations"):
        assert detail.startswith("none of the"), detail
        return None
    raise AssertionError(f"{route}: a request the document allows was refused: {status} {detail}")


@pytest.mark.parametrize("method,path", sorted(ROUTES), ids=[f"{m} {p}" for m, p in sorted(ROUTES)])
def test_requests_the_document_allows_get_answers_it_documents(api, method, path):
    operation = api[path][method]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests in every run: CI is not a lottery
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(hooks=api.hooks))
    def fuzz(case):
        case.call_and_validate(
            headers={"Authorization": f"Bearer {TOKEN}"},
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
                only_documented_refusals,
            ],
        )

    fuzz()


def test_the_document_names_a_model_and_the_statuses_of_every_route(workspace):
    from fastapi.testclient import TestClient

    with TestClient(create_app(workspace, write_token=TOKEN)) as client:
        document = client.get("/openapi.json").json()
    found = {
        (method.upper(), path): set(operation["responses"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert found == ROUTES
    for (method, path), statuses in ROUTES.items():
        responses = document["paths"][path][method.lower()]["responses"]
        for status in statuses - {"200"}:
            body = responses[status]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
        ok = responses["200"]["content"]
        if path.endswith("/clip"):
            assert "audio/ogg" in ok and ok["audio/ogg"]["schema"]["format"] == "binary"
        else:
            assert ok["application/json"]["schema"]["$ref"].startswith("#/components/schemas/")
    assert "HTTPValidationError" not in document["components"]["schemas"]
    song_id = document["paths"]["/api/songs/{song_id}"]["get"]["parameters"][0]["schema"]
    assert song_id["maxLength"] == 128 and song_id["pattern"].startswith("^[A-Za-z0-9]")
    n = document["paths"]["/api/songs"]["get"]["parameters"][1]["schema"]
    assert (n["minimum"], n["maximum"]) == (1, 500)
    assert NO_WARM_PLAYS in str(document["paths"]["/api/recommendations"]["post"]["responses"])


def test_the_read_only_document_has_no_write_route(workspace):
    from fastapi.testclient import TestClient

    with TestClient(create_app(workspace)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/songs"]) == {"get"}
    assert len(paths) == len({path for _, path in ROUTES})


def test_the_edges_of_the_document_are_answered(workspace, known):
    """Values at the document's bounds are accepted and answered within its models; the
    first values past them are refused (before the fuzzer: a play count of 1e300 gave
    factors of NaN, a query of spaces a 400)."""
    from fastapi.testclient import TestClient

    from coldtune.catalogue import MAX_PLAY_COUNT

    warm = known["warm"][0]
    with TestClient(create_app(workspace)) as client:
        most = client.post("/api/recommendations", json={"plays": {warm: MAX_PLAY_COUNT}})
        assert most.status_code == 200 and len(most.json()["songs"]) == 20
        assert all(isinstance(v, float) for v in most.json()["factors"])
        over = client.post("/api/recommendations", json={"plays": {warm: 1e300}})
        assert over.status_code == 422
        assert client.get("/api/songs", params={"q": " \x1c\x85"}).status_code == 422
        assert client.get("/api/songs", params={"q": "\x85" + warm}).json()["songs"]
        longest = "S" + "a." * 63 + "b"  # 128 characters, the pattern's longest
        assert client.get(f"/api/songs/{longest}").status_code == 404
        assert client.get(f"/api/songs/{longest}b").status_code == 400
        assert client.get("/api/songs/a.b.").status_code == 404
        assert client.get("/api/songs/a..b").status_code == 400
