"""Commands that use the predictions: tags, similar songs, search, recommendations, new
clips, the map, the report, the service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coldtune.cli.common import (
    CountOption,
    ModelOption,
    WorkersOption,
    WorkspaceOption,
    app,
    bars,
    command,
    friendly,
    ranked,
    say,
    tags_app,
)
from coldtune.cli.options import takes
from coldtune.errors import ColdtuneError
from coldtune.eval.song_map import MapConfig
from coldtune.eval.tags import TagConfig
from coldtune.workspace import Workspace


@tags_app.callback(invoke_without_command=True)
@friendly
@takes(TagConfig, into="config")
def tags_predict(
    ctx: typer.Context,
    config: TagConfig,
    workspace: Annotated[
        Path | None, typer.Option("--workspace", "-w", help="The experiment's folder.")
    ] = None,
    model: ModelOption = None,
    workers: WorkersOption = None,
):
    """Tag prediction (section 5.1): mean AUC of a logistic regression per tag from WMF
    factors, BoW-PCA audio features and predicted factors."""
    if ctx.invoked_subcommand is not None:
        return
    if workspace is None:
        say(ctx.get_help())
        raise typer.Exit(0)
    from coldtune.eval.tags import tags_markdown
    from coldtune.steps.analyses import tags as tag_experiment

    with bars(22) as show:
        results = tag_experiment(
            Workspace(workspace),
            config,
            model=model,
            workers=workers,
            on_progress=lambda row, column, done, total: show(f"{row}, {column}", done, total),
        )
    say(tags_markdown(results))
    say(f"wrote {workspace / 'results' / 'tags.json'} and tags.md")


@command(app, "similar")
def similar(
    song: Annotated[str, typer.Argument(help="A song id (`coldtune search` finds one).")],
    workspace: WorkspaceOption,
    n: CountOption = 10,
    model: ModelOption = None,
):
    """Table 4: the songs with the closest usage patterns, by WMF and by predicted factors."""
    from coldtune.steps.catalogue import load_catalogue

    catalogue = load_catalogue(Workspace(workspace), model=model)
    found = catalogue.similar(song, n=n)
    row = catalogue.song_row(song)
    cold = " (cold)" if catalogue.cold[row] else ""
    say(f"[bold]{catalogue.label(row)}{cold}  ({song})[/]")
    titles = {"usage": "by usage (WMF factors)", "predicted": f"by audio ({catalogue.model_name})"}
    for space, neighbours in found.items():
        none = {"usage": "no plays yet", "predicted": "the song has no audio"}[space]
        say(f"\n{titles[space]}:" + ("" if neighbours else f"\n  ({none})"))
        ranked(catalogue, [(nb.index, f"  {nb.similarity:.4f}") for nb in neighbours])


@command(app, "search")
def search(
    query: Annotated[str, typer.Argument(help="Words of an artist, a title or an id.")],
    workspace: WorkspaceOption,
    n: CountOption = 20,
):
    """Find songs by artist or title, to get their ids."""
    from coldtune.steps.catalogue import search as find

    found = find(Workspace(workspace), query, n=n)
    for song, artist, title in found:
        say(f"{song}  {artist} - {title}")
    if not found:
        say("no song matches")


@command(app, "recommend")
def recommend(
    workspace: WorkspaceOption,
    user: Annotated[str | None, typer.Argument(help="A user id of the workspace.")] = None,
    plays: Annotated[
        Path | None,
        typer.Option(help="A new listener's plays instead: a song id and count per line."),
    ] = None,
    every_user: Annotated[
        bool, typer.Option("--all", help="Every user's top songs, into the file --out.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="With --all: the Parquet file to write.")
    ] = None,
    n: CountOption = 20,
    cold_only: Annotated[bool, typer.Option(help="Only songs nobody has played yet.")] = False,
    model: ModelOption = None,
):
    """Top songs for a user by x_u^T y (warm songs: WMF; cold songs: predicted factors).

    With --plays FILE, for a listener the workspace has never seen: folded in from
    their plays (eq. 3 with the song factors fixed), never a song they played. With
    --all -o FILE, every user's top songs, as Parquet (user, rank, song, score).
    """
    from coldtune.data.plays import read_listener_plays
    from coldtune.steps.catalogue import load_catalogue, recommend_all

    if sum((user is not None, plays is not None, every_user)) != 1:
        raise ColdtuneError("give one of: a user id, --plays FILE (a new listener), --all")
    if every_user:
        if out is None:
            raise ColdtuneError("--all needs --out FILE (Parquet)")
        with bars(9) as show:
            done = recommend_all(
                Workspace(workspace),
                out,
                n=n,
                cold_only=cold_only,
                model=model,
                on_progress=lambda users, total: show("users", users, total),
            )
        say(
            f"{done['rows']:,} recommendations for {done['users']:,} users "
            f"({done['model'] or 'no clip model'}) in {done['seconds']:.1f} s -> {out}"
        )
        return
    listener, skipped = read_listener_plays(plays) if plays is not None else (None, [])
    catalogue = load_catalogue(Workspace(workspace), model=model)
    if listener is not None:
        found = catalogue.recommend_for_plays(listener, n=n, cold_only=cold_only)
        for bad in skipped:
            say(f"{plays}: {bad} (skipped)")
        for key, what in (("unknown", "not in the catalogue"), ("cold_played", "cold")):
            if found[key]:
                say(f"{len(found[key])} songs {what}, not read: {', '.join(found[key][:10])}")
        say(f"[bold]{plays}[/]: folded in from {len(found['used'])} warm songs")
        picks = found["songs"]
    else:
        about = catalogue.user_summary(catalogue.user_row(user))
        most = "; ".join(about["top_songs"])
        say(f"[bold]{user}[/]: {about['songs_played']} songs played, most: {most}")
        picks = catalogue.recommend(user, n=n, cold_only=cold_only)
    lines = [(p["row"], f"  {p['score']:.3f}" + _held_out(p["held_out_plays"])) for p in picks]
    ranked(catalogue, lines, indent=" ")


def _held_out(plays: int) -> str:
    return f", played {plays}x (held out)" if plays else ""


@command(app, "embed")
def embed(
    file: Annotated[Path, typer.Argument(help="An audio file (mp3, ogg, wav, flac, ...).")],
    workspace: WorkspaceOption,
    n: CountOption = 10,
    model: ModelOption = None,
    factors: Annotated[bool, typer.Option(help="Print the predicted factors too.")] = False,
):
    """A brand-new clip: its predicted factors, the most similar songs, likely listeners."""
    from coldtune.steps.catalogue import load_catalogue

    catalogue = load_catalogue(Workspace(workspace), model=model)
    predicted = catalogue.embed_file(file)
    say(f"[bold]{file}[/]: factors predicted by {catalogue.model_name}")
    if factors:
        say(" ".join(f"{v:.4f}" for v in predicted))
    say("\nmost similar songs (predicted usage patterns):")
    neighbours = catalogue.similar_to_factors(predicted, n=n)
    ranked(catalogue, [(nb.index, f"  {nb.similarity:.4f}") for nb in neighbours])
    say("\nusers most likely to enjoy it (predicted preference x_u^T y):")
    for rank, (u, score) in enumerate(catalogue.listeners(predicted, n=n), start=1):
        about = catalogue.user_summary(u, n=2)
        say(
            f"  {rank:>2}. {about['user_id']}  {score:.3f}  (plays {'; '.join(about['top_songs'])})"
        )


@command(app, "map")
@takes(MapConfig, into="config")
def song_map(workspace: WorkspaceOption, config: MapConfig, model: ModelOption = None):
    """Figure 1: t-SNE of predicted usage patterns, as a PNG and an interactive page."""
    from coldtune.steps.analyses import song_map as write_map

    result = write_map(Workspace(workspace), config, model=model)
    folder = workspace / "results" / "map"
    say(
        f"{len(result['song_ids']):,} songs placed by {result['model']}, coloured by "
        f"{', '.join(result['colour_tags']) or 'nothing'}: {folder / 'map.png'}, "
        f"{folder / 'map.html'}",
    )


@command(app, "report")
def report(workspace: WorkspaceOption, model: ModelOption = None):
    """One HTML page: results table, tag AUCs, similar songs, the map, stage times."""
    from coldtune.steps.report import write_report

    path = write_report(
        Workspace(workspace), model=model, on_stage=lambda stage, s: say(f"{stage}: {s:.1f} s")
    )
    say(f"wrote {path}")


@command(app, "serve")
def serve(
    workspace: WorkspaceOption,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 opens it to the network.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: ModelOption = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload, MiB.")] = 16.0,
    write_token: Annotated[
        str | None,
        typer.Option(
            envvar="COLDTUNE_WRITE_TOKEN",
            show_envvar=True,
            help="Turns on POST /api/songs for requests with this bearer token (16+ "
            "characters); better from the environment variable, which `ps` does not show.",
        ),
    ] = None,
):
    """The web service and its page: http://HOST:PORT/ (API docs at /docs)."""
    import uvicorn

    from coldtune.serve import create_app

    app_ = create_app(
        Workspace(workspace),
        model=model,
        max_upload_bytes=int(max_upload_mb * 2**20),
        write_token=write_token,
    )
    writes = "POST /api/songs with the token" if write_token else "read-only"
    say(f"serving {workspace} on http://{host}:{port}/ (API: /docs; {writes})")
    uvicorn.run(app_, host=host, port=port, log_level="info")
