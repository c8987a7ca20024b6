"""The service's page, the interactive map and the report in a real browser: Debian's
headless Chromium driven by playwright (which downloads no browser of its own).

Screenshots of each go to the test's temporary folder, and to $COLDTUNE_SCREENSHOTS
when it is set, to look at them as a user would.
"""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from coldtune.serve import create_app
from coldtune.steps.catalogue import load_catalogue

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Debian's chromium is not installed: `make setup` installs it")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def server(small_workspace):
    """The service on a free loopback port, in a thread of this process."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(small_workspace), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def catalogue(small_workspace):
    return load_catalogue(small_workspace)


def screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("COLDTUNE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path


def drawn_pixels(page, selector: str) -> int:
    """Pixels of the canvas that are not blank."""
    return page.evaluate(
        """(selector) => {
            const canvas = document.querySelector(selector);
            const pixels = canvas.getContext("2d")
                .getImageData(0, 0, canvas.width, canvas.height).data;
            let drawn = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) drawn++;
            return drawn;
        }""",
        selector,
    )


def test_uploading_a_clip_shows_its_nearest_songs_and_where_it_lands(
    page, server, catalogue, tmp_path
):
    page.goto(server)
    page.wait_for_selector("body[data-ready=yes]", timeout=60_000)
    assert "150 songs (30 cold)" in page.text_content("#about")
    assert drawn_pixels(page, "#map") > 500

    row = int(np.flatnonzero(catalogue.cold)[1])
    song = str(catalogue.song_ids[row])
    page.set_input_files("#file", str(catalogue.clips[song]))
    page.click("#upload")
    page.wait_for_selector("#clip-similar li a", timeout=60_000)
    first = page.text_content("#clip-similar li")
    assert catalogue.titles[row] in first and "cold" in first
    assert page.locator("#clip-listeners li").count() == 8
    assert "lands near" in page.text_content("#landing")
    assert page.get_attribute("#player", "src").startswith("blob:")
    screenshot(page, tmp_path, "page-upload")

    # a listener's recommendations, from the list of likely listeners
    page.click("#clip-listeners li a")
    page.wait_for_selector("#user-songs li a", timeout=30_000)
    assert "played" in page.text_content("#user-about")


def test_a_bad_upload_says_why_and_the_page_keeps_working(page, server, catalogue, tmp_path):
    page.goto(server)
    page.wait_for_selector("body[data-ready=yes]", timeout=60_000)
    text = tmp_path / "notes.txt"
    text.write_text("not music\n" * 100)
    page.set_input_files("#file", str(text))
    page.click("#upload")
    page.wait_for_selector("#status.error", timeout=30_000)
    assert "422: not a usable clip: not a readable audio file" in page.text_content("#status")
    screenshot(page, tmp_path, "page-bad-upload")

    page.fill("#query", catalogue.titles[4])
    page.click("#search-form button")
    page.wait_for_selector("#search-results li a", timeout=30_000)
    page.click("#search-results li button:has-text('try its clip')")
    page.wait_for_selector("#clip-similar li a", timeout=60_000)
    assert catalogue.titles[4] in page.text_content("#clip-similar li")
    assert page.text_content("#status").startswith(catalogue.label(4))


def test_clicking_a_song_shows_both_kinds_of_neighbours(page, server, catalogue, tmp_path):
    page.goto(server)
    page.wait_for_selector("body[data-ready=yes]", timeout=60_000)
    x, y = page.evaluate(f"map.pointOf(map.indexOf('{catalogue.song_ids[7]}'))")
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#tip", state="visible")
    assert catalogue.titles[7] in page.text_content("#tip")
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#song-section:not([hidden]) #song-predicted li a")
    assert catalogue.titles[7] in page.text_content("#song-title")
    usage = page.locator("#song-usage li").all_text_contents()
    expected = catalogue.similar(str(catalogue.song_ids[7]), n=8)["usage"]
    assert len(usage) == 8
    for nb, item in zip(expected, usage, strict=True):
        assert catalogue.titles[nb.index] in item
    assert page.get_attribute("#player", "src").endswith(f"/api/songs/{catalogue.song_ids[7]}/clip")
    screenshot(page, tmp_path, "page-song")


def test_the_report_and_the_map_open_as_files(page, small_workspace, tmp_path):
    from typer.testing import CliRunner

    from coldtune.cli import app

    result = CliRunner().invoke(app, ["report", "-w", str(small_workspace.root)])
    assert result.exit_code == 0, result.output
    page.goto((small_workspace.results_dir / "report.html").as_uri())
    assert page.evaluate("document.querySelector('img').naturalWidth") > 500
    headings = page.locator("h2").all_text_contents()
    assert len(headings) == 6 and headings[0].startswith("Cold-start recommendation")
    assert headings[4] == "Warm-up: cold songs from their first plays"
    screenshot(page, tmp_path, "report")

    page.goto((small_workspace.results_dir / "map" / "map.html").as_uri())
    assert drawn_pixels(page, "#map") > 500
    x, y = page.evaluate("map.pointOf(0)")
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#tip", state="visible")
    data = page.evaluate("data")
    assert data["titles"][0] in page.text_content("#tip")
    page.mouse.click(box["x"] + x, box["y"] + y)
    src = page.get_attribute("#player", "src")
    assert src == data["clips"][0] and page.text_content("#now").startswith("playing")
    screenshot(page, tmp_path, "map")


def test_the_api_docs_page_lists_every_operation(page, server):
    """Swagger UI renders from the server's own copy: the browser has no other host."""
    page.goto(f"{server}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    for path in ("/api/clips", "/api/songs/{song_id}/similar", "/api/map"):
        assert any(path in shown.replace("\u200b", "") for shown in paths), (path, paths)
