"""The web pages in a real browser: Debian's Chromium, driven by Selenium through chromedriver, against the
app served over real HTTP on loopback (uvicorn), with the real detector in-process and a real catalog.
The browser's console log must stay free of errors on every page."""

from __future__ import annotations

import os
import shutil
import time

import pytest
import requests

from clockwork.testing import wait_for_job

pytestmark = pytest.mark.slow

TOKEN = "ui-test-token"


@pytest.fixture(scope="module")
def live(tmp_path_factory, samples_dir, detector):
    """``build_app`` served by uvicorn on a loopback port, in a thread of this process."""
    from clockwork.testing import AppServer
    from serve_app.api import Api, build_app
    from serve_app.client import LocalDetectorClient
    from serve_app.config import AppArgs

    tmp = tmp_path_factory.mktemp("ui")
    media = tmp / "media"
    media.mkdir()
    shutil.copy(samples_dir / "clock_static_720p30.mp4", media / "<script>alert('x')<b>.mp4")
    args = AppArgs(
        media_roots=[str(samples_dir), str(media)],
        database_url=f"sqlite:///{tmp}/ui.sqlite",
        api_token=TOKEN,
        cache_dir=str(tmp / "cache"),
    )
    with AppServer(build_app(Api(args, LocalDetectorClient(detector)))) as server:
        yield {
            "base": server.url,
            "headers": {"Authorization": f"Bearer {TOKEN}"},
            "media": media,
            "db": f"{tmp}/ui.sqlite",
        }


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.fail("Debian's chromium and chromium-driver are needed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1800",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(driver, css: str, timeout: float = 20.0):
    """The element once the page that has it has loaded (a form's submit returns before its answer)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def sign_in(driver, base):
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/ui/jobs")
    if driver.find_elements(By.ID, "token"):  # not signed in yet
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "sign-in").click()
        wait_for(driver, "#jobs")


def submit(live, **body) -> str:
    resp = requests.post(f"{live['base']}/video-inference", json=body, headers=live["headers"], timeout=30)
    assert resp.status_code == 202, resp.text
    return resp.json()["job_id"]


def test_the_token_is_required_when_set(live, browser):
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    resp = requests.get(f"{live['base']}/ui/jobs", timeout=10, allow_redirects=False)
    assert resp.status_code == 303 and "/ui/login" in resp.headers["location"]
    assert (
        requests.get(f"{live['base']}/ui/jobs", headers=live["headers"], timeout=10).status_code == 200
    )  # or the API's bearer
    browser.get(f"{live['base']}/ui/jobs")
    assert browser.find_elements(By.ID, "token") and not browser.find_elements(By.ID, "jobs")
    browser.find_element(By.ID, "token").send_keys("wrong")
    browser.find_element(By.ID, "sign-in").click()
    wait_for(browser, "span.error")
    assert "not right" in browser.page_source and not browser.find_elements(By.ID, "jobs")
    assert [e["message"] for e in console_errors(browser)] == [
        f"{live['base']}/ui/login - Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]
    sign_in(browser, live["base"])
    assert browser.find_elements(By.ID, "jobs"), browser.page_source[:2000]


def test_a_running_job_shows_and_its_progress_advances(live, browser):
    from selenium.webdriver.common.by import By

    sign_in(browser, live["base"])
    job_id = submit(live, filename="clock_static_720p30.mp4", sample_fps=0, views=["full", "zoomout", "tiles"])
    seen = []
    deadline = time.time() + 120
    while time.time() < deadline:
        browser.get(f"{live['base']}/ui/jobs")
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]')
        status = row.get_attribute("data-status")
        shown = row.find_element(By.CLASS_NAME, "progress")
        done = float(shown.get_attribute("data-done") or 0)
        if status == "running" and shown.get_attribute("data-stage"):
            assert float(shown.get_attribute("data-total")) == pytest.approx(6.0, abs=0.1)  # the video's seconds, fixed
        seen.append((status, done))
        if status == "succeeded":
            break
        time.sleep(0.7)
    running = [d for s, d in seen if s == "running"]
    assert len(set(running)) >= 2 and running == sorted(running), seen  # shown running, progress going up
    assert seen[-1][0] == "succeeded"
    assert not console_errors(browser)


def test_a_finished_video_shows_its_segments_with_boxed_thumbnails(live, browser):
    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.by import By

    sign_in(browser, live["base"])
    job_id = submit(live, filename="clock_moving_360p25.mp4", sample_fps=5, views=["full"])
    wait_for_job(
        lambda j: requests.get(f"{live['base']}/jobs/{j}", headers=live["headers"], timeout=10).json(),
        job_id,
        lambda s: s["status"] == "succeeded",
    )
    result = requests.get(f"{live['base']}/jobs/{job_id}/result", headers=live["headers"], timeout=10).json()
    browser.get(f"{live['base']}/ui/jobs/{job_id}")
    assert int(browser.find_element(By.ID, "segment-count").text) == len(result["segments"]) >= 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "rect.segment")) == len(result["segments"])
    thumbs = browser.find_elements(By.CSS_SELECTOR, "img.thumb")
    assert len(thumbs) >= len(result["segments"])
    assert all(
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", t) for t in thumbs
    )
    assert "00:00:00" in browser.find_element(By.CSS_SELECTOR, "svg.timeline").text  # a time axis in HH:MM:SS
    # the thumbnail has the box drawn: the box's edge pixels carry the first track colour
    import io

    data = requests.get(
        thumbs[0].get_attribute("src"), cookies={c["name"]: c["value"] for c in browser.get_cookies()}, timeout=30
    ).content
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    red = (image[..., 0] > 200) & (image[..., 1] < 110) & (image[..., 2] < 110)
    assert red.sum() > 50, red.sum()
    assert not console_errors(browser)


def test_untrusted_names_are_shown_as_text(live, browser):
    from selenium.webdriver.common.by import By

    sign_in(browser, live["base"])
    name = "<script>alert('x')<b>.mp4"
    job_id = submit(live, filename=name, sample_fps=1, views=["full"])
    wait_for_job(
        lambda j: requests.get(f"{live['base']}/jobs/{j}", headers=live["headers"], timeout=10).json(),
        job_id,
        lambda s: s["status"] in ("succeeded", "failed"),
    )
    for page in ("/ui/jobs", f"/ui/jobs/{job_id}", "/ui/library"):
        browser.get(live["base"] + page)
        assert name in browser.find_element(By.TAG_NAME, "main").text, page  # the literal text, on screen
        assert not browser.find_elements(By.CSS_SELECTOR, "main script, main b"), page
        assert not console_errors(browser), page


def test_library_lists_videos_without_clocks(live, browser):
    from selenium.webdriver.common.by import By

    sign_in(browser, live["base"])
    job_id = submit(live, filename="distractor_life_25.mp4", sample_fps=2, views=["full"])
    wait_for_job(
        lambda j: requests.get(f"{live['base']}/jobs/{j}", headers=live["headers"], timeout=10).json(),
        job_id,
        lambda s: s["status"] == "succeeded",
    )
    browser.get(f"{live['base']}/ui/library")
    rows = {
        r.find_element(By.TAG_NAME, "td").text: r.get_attribute("data-found")
        for r in browser.find_elements(By.CSS_SELECTOR, "tr.video")
    }
    assert rows["distractor_life_25.mp4"] == "no" and rows["clock_moving_360p25.mp4"] in ("yes", "unscanned")
    assert "no clock found" in browser.page_source
    browser.get(f"{live['base']}/docs")
    assert "/video-inference" in browser.page_source
    assert not console_errors(browser)


def test_the_remix_page_plays_and_places_each_snippet(live, browser, samples_dir):
    """A remix as jobs.join records it (clockwork.remix.remix_document, real files) shown with its player, each
    snippet's offset in the remix and a link to its source video's page."""
    from selenium.webdriver.common.by import By

    from clockwork.remix import Pick, Selection, remix_document
    from clockwork.store.catalog import Catalog, Remix, Video

    sign_in(browser, live["base"])
    job_id = submit(live, filename="clock_moving_360p25.mp4", sample_fps=5, views=["full"])
    wait_for_job(
        lambda j: requests.get(f"{live['base']}/jobs/{j}", headers=live["headers"], timeout=10).json(),
        job_id,
        lambda s: s["status"] == "succeeded",
    )
    source = str(samples_dir / "clock_moving_360p25.mp4")
    picks = [
        Pick("a.mp4", str(samples_dir / "clock_static_720p30.mp4"), source, 0.5, 3.0, 0.9, None),
        Pick("b.mp4", str(samples_dir / "clock_60fps_480p.mp4"), source, 5.0, 7.5, 0.8, None),
    ]
    sources = {source: {"duration_s": 8.0, "frames": [(1.0, 0.9)], "segments": [(0.5, 3.0), (5.0, 7.5)]}}
    doc = remix_document(
        samples_dir / "clock_moving_360p25.mp4",
        picks=picks,
        sources=sources,
        selection=Selection(picks, [], [], []),
        label="clock",
        order="source-time",
        no_clocks=["/m/empty.mp4"],
    )
    catalog = Catalog(f"sqlite:///{live['db']}")
    with catalog.session() as s:
        s.add(Remix(path=doc["path"], label="clock", duration_s=5.0, document=doc))
        video_id = s.query(Video).filter(Video.path == source).one().id
    browser.get(f"{live['base']}/ui/remix")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.snippet")
    assert [r.get_attribute("data-name") for r in rows] == ["a.mp4", "b.mp4"]
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == [
        "00:00:00",
        "00:00:02",
    ]  # offsets in the remix
    assert rows[0].find_element(By.TAG_NAME, "a").get_attribute("href").endswith(f"/ui/videos/{video_id}")
    player = browser.find_element(By.TAG_NAME, "video")
    for _ in range(50):
        if (
            browser.execute_script("return arguments[0].readyState", player) >= 1
        ):  # the browser read the file's metadata
            break
        time.sleep(0.1)
    assert browser.execute_script("return arguments[0].duration", player) > 1
    assert all(
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        for img in browser.find_elements(By.CSS_SELECTOR, "img.thumb")
    )
    assert "empty.mp4" in browser.find_element(By.ID, "no-clocks").text
    assert not console_errors(browser)


def test_every_remix_is_listed_and_cards_snippets_and_gaps_are_drawn_apart(live, browser, samples_dir):
    """A time-of-day remix with cards beside a random one: both listed; the cards drawn black, the snippets orange,
    with a legend; the dial's coverage shown only for the time-of-day remix."""
    from selenium.webdriver.common.by import By

    from clockwork.remix import Pick, Selection, place, remix_document
    from clockwork.store.catalog import Catalog, Remix

    sign_in(browser, live["base"])
    source = str(samples_dir / "clock_moving_360p25.mp4")
    picks = [
        Pick("c.mp4", str(samples_dir / "clock_static_720p30.mp4"), source, 0.5, 3.0, 0.9, None, 612),
        Pick("d.mp4", str(samples_dir / "clock_60fps_480p.mp4"), source, 5.0, 7.0, 0.8, None, 615),
    ]
    sources = {source: {"duration_s": 8.0, "frames": [(1.0, 0.9)], "segments": [(0.5, 3.0), (5.0, 7.0)]}}
    placement = place(picks, start=612, span=5)
    clock_doc = remix_document(
        samples_dir / "clock_static_720p30.mp4",
        picks=picks,
        sources=sources,
        selection=Selection(picks, [], [], []),
        label="clock",
        order="time-of-day",
        placement=placement,
    )
    random_doc = remix_document(
        samples_dir / "clock_60fps_480p.mp4",
        picks=picks,
        sources=sources,
        selection=Selection(picks, [], [], []),
        label="clock",
        order="random",
    )
    with Catalog(f"sqlite:///{live['db']}").session() as s:
        older = Remix(path=clock_doc["path"], label="clock", duration_s=placement.duration_s, document=clock_doc)
        s.add(older)
        s.flush()
        older_id = older.id
        s.add(Remix(path=random_doc["path"], label="clock", duration_s=4.5, document=random_doc))
    browser.get(f"{live['base']}/ui/remix")  # the newest: the random one
    listed = [r.get_attribute("data-remix") for r in browser.find_elements(By.CSS_SELECTOR, "tr.remix")]
    assert str(older_id) in listed and len(listed) >= 2
    assert not browser.find_elements(By.ID, "coverage")  # a random order keeps no time of day
    browser.find_element(By.CSS_SELECTOR, "details#all-remixes summary").click()
    browser.find_element(By.CSS_SELECTOR, f'tr.remix[data-remix="{older_id}"] a').click()
    wait_for(browser, "#coverage")
    assert browser.current_url.endswith(f"/ui/remix/{older_id}")
    placed = browser.find_elements(By.CSS_SELECTOR, "svg.timeline")[0].find_elements(By.CSS_SELECTOR, "rect.segment")
    kinds = [r.get_attribute("data-kind") for r in placed]
    fills = {r.get_attribute("data-kind"): r.get_attribute("fill") for r in placed}
    assert kinds.count("snippet") == 2 and kinds.count("card") == len(clock_doc["cards"]) >= 1
    assert fills["card"] != fills["snippet"] and "gap" not in fills  # the cards fill every minute no clip covers
    legend = browser.find_element(By.ID, "legend").text
    assert "snippet" in legend and "black card" in legend and "gap" in legend
    assert not console_errors(browser)
    shots = os.environ.get(
        "CLOCKWORK_SCREENSHOTS"
    )  # README images: CLOCKWORK_SCREENSHOTS=docs/img pytest tests/test_ui.py
    if shots:
        browser.save_screenshot(os.path.join(shots, "ui-remix.png"))


def test_a_videos_page_plays_it_with_a_box_on_every_frame(live, browser):
    """At the defaults (a scan), the player's video has the box on a frame the scan never examined."""
    import av
    from selenium.webdriver.common.by import By

    sign_in(browser, live["base"])
    job_id = submit(live, filename="clock_moving_360p25.mp4")
    wait_for_job(
        lambda j: requests.get(f"{live['base']}/jobs/{j}", headers=live["headers"], timeout=10).json(),
        job_id,
        lambda s: s["status"] == "succeeded",
    )
    result = requests.get(f"{live['base']}/jobs/{job_id}/result", headers=live["headers"], timeout=10).json()
    seg = result["segments"][0]
    examined = {f["frame_no"] for f in result["frame_data"]}
    between = next(n for n in range(seg["start_frame"], seg["end_frame"]) if n not in examined)
    browser.get(f"{live['base']}/ui/library")
    browser.find_element(By.LINK_TEXT, "clock_moving_360p25.mp4").click()
    player = wait_for(browser, "video#annotated", timeout=120)  # the page refreshes while the video is drawn
    data = requests.get(
        player.get_attribute("src"), cookies={c["name"]: c["value"] for c in browser.get_cookies()}, timeout=60
    )
    assert data.status_code == 200 and data.headers["content-type"] == "video/mp4"
    path = live["media"].parent / "annotated-download.mp4"
    path.write_bytes(data.content)
    with av.open(str(path)) as container:
        frame = (
            next(f for i, f in enumerate(container.decode(video=0)) if i == between)
            .to_ndarray(format="rgb24")
            .astype(int)
        )
    red = (frame[..., 0] > 200) & (frame[..., 1] < 110) & (frame[..., 2] < 110)  # the first track's colour
    assert red.sum() > 50, (between, red.sum())
    for _ in range(50):
        if browser.execute_script("return arguments[0].readyState", player) >= 1:
            break
        time.sleep(0.1)
    assert browser.execute_script("return arguments[0].duration", player) > 7
    assert not console_errors(browser)
    shots = os.environ.get("CLOCKWORK_SCREENSHOTS")
    if shots:  # the README's image: the player paused mid-segment, on a frame the scan did not examine
        browser.execute_script("arguments[0].currentTime = arguments[1]", player, between / result["fps"])
        time.sleep(1.0)
        browser.save_screenshot(os.path.join(shots, "ui-video.png"))


def test_an_unscanned_file_is_scanned_from_the_library(live, browser, samples_dir):
    from selenium.webdriver.common.by import By

    shutil.copy(samples_dir / "clock_60fps_480p.mp4", live["media"] / "fresh.mp4")
    sign_in(browser, live["base"])
    browser.get(f"{live['base']}/ui/library")
    row = next(
        r
        for r in browser.find_elements(By.CSS_SELECTOR, "tr.video")
        if r.find_element(By.TAG_NAME, "td").text == "fresh.mp4"
    )
    assert row.get_attribute("data-found") == "unscanned"
    row.find_element(By.CSS_SELECTOR, "form.scan button").click()
    status = wait_for(browser, "#job-status")
    assert "/ui/jobs/" in browser.current_url and status.text in ("queued", "running", "succeeded"), browser.current_url
    job_id = browser.current_url.rsplit("/", 1)[-1]
    done = wait_for_job(
        lambda j: requests.get(f"{live['base']}/jobs/{j}", headers=live["headers"], timeout=10).json(),
        job_id,
        lambda s: s["status"] in ("succeeded", "failed"),
        timeout=180,
    )
    assert done["status"] == "succeeded" and done["filename"] == "fresh.mp4", done
    assert not console_errors(browser)
