"""`somna ui` in a real headless Chromium (Debian's chromium and chromium-driver, over WebDriver), against a
real `somna ui` process on a real store: each step asserts what the page shows and what the store holds
(files, git log). The refusals (no token, another Origin, another Host, a used login link) are plain HTTP.
Screenshots of each view go to a temporary folder, or to docs/ui/ (the README shows them) when
SOMNA_UI_SHOTS=docs is set: a test run does not rewrite tracked files.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from conftest import REPO, git

from somna.app import open_store
from somna.embeddings import HashEmbedder
from somna.sleep.cycle import Cycle
from somna.store import Store

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMEDRIVER) and os.path.exists(CHROMIUM)),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)
SHOTS = (
    REPO / "docs" / "ui"
    if os.environ.get("SOMNA_UI_SHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "somna-ui-shots"
)
TOML = "[sleep.thresholds]\nduplicate = 0.55\ncontradiction = 0.5\nsure = 0.6\nlink = 0.45\n"
RATE = "Retry on HTTP 429: back off 2 s, and only for idempotent endpoints."
HOSTILE = (
    "Harvested from a transcript.\n\n"
    "<script>document.body.dataset.pwned = 'script'</script>\n\n"
    "<img src=x onerror=\"document.body.dataset.pwned = 'img'\">\n\n"
    "[a javascript link](javascript:document.body.dataset.pwned='link')\n\n"
    "[the password file](file:///etc/passwd)\n\n"
    "[an entity-encoded one](jav&#x61;script:document.body.dataset.pwned='entity')\n\n"
    "[a safe link](https://example.com/docs)\n"
)


@dataclass
class Seeded:
    root: Path
    ids: dict[str, str]  # name -> memory id
    proposals: dict[str, str]  # name -> proposal id


@pytest.fixture
def seeded(somna_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Seeded]:
    """A user store with a week of memories and feedback, two agents' edit proposals, and a sleep cycle that
    queued a change."""
    Store.init(somna_env).close()
    (somna_env / "somna.toml").write_text(TOML, encoding="utf-8")
    store = open_store(somna_env, embedder=HashEmbedder())
    try:
        for day in range(1, 8):  # a week of learning: commits dated on earlier days, feedback on them
            stamp = f"2026-11-{20 + day:02d}T10:00:00Z"
            monkeypatch.setenv("GIT_AUTHOR_DATE", stamp)
            monkeypatch.setenv("GIT_COMMITTER_DATE", stamp)
            for k in range(day):
                out = store.write(f"Lesson {k} of day {day}: pin tool {chr(97 + k)}{day} to version {day}.{k}.",
                                  author="agent-a", force=True)  # fmt: skip
                store.flush_commits()
                store.index.add_feedback([out["id"]], "helpful" if k % 3 else "harmful", "agent-a", stamp)
        monkeypatch.delenv("GIT_AUTHOR_DATE")
        monkeypatch.delenv("GIT_COMMITTER_DATE")
        ids = {
            "rate": store.write(RATE, title="Rate limits", author="agent-a", tags=["http"])["id"],
            "hostile": store.write(HOSTILE, title="A hostile memory", author="agent-b")["id"],
            "deploy": store.write(
                "Deploy with make release from a clean tree.", title="Deploy", author="agent-a"
            )["id"],
            "docs": store.write("Docs build with mkdocs.", title="Docs", author="agent-a")["id"],
        }
        old = store.write(
            "The cache TTL for the catalog service is 300 seconds.", title="TTL", author="agent-a"
        )
        time.sleep(1.1)
        store.write("The cache TTL for the catalog service is 900 seconds.", author="agent-b", force=True)
        props = {}
        for name, text in (("accept", "Tag the release first."), ("reject", "Docs are hand-written HTML.")):
            ref = ids["deploy" if name == "accept" else "docs"]
            out = store.edit(
                ref, "append", store.read(ref)["version"], author="agent-c", text=text, policy="propose"
            )
            props[name] = out["proposal"]
        Cycle(store, policy={"supersede": "propose"}).run()
        ids["old-ttl"] = old["id"]
        store.flush_commits()
    finally:
        store.close()
    yield Seeded(somna_env, ids, props)


@dataclass
class Running:
    base: str
    login: str
    proc: subprocess.Popen[str]


@pytest.fixture
def ui(seeded: Seeded, tmp_path: Path) -> Iterator[Running]:
    """A real `somna ui` on a free loopback port; its first line on stdout is the one-time login link."""
    err = open(tmp_path / "ui.log", "w", encoding="utf-8")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "somna", "ui", "--port", "0", "--no-browser", "--words"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)(/login\?code=\S+)", line)
        assert match, (line, (tmp_path / "ui.log").read_text())
        yield Running(match.group(1), match.group(1) + match.group(2), proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
        err.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def by(kind: str) -> str:
    from selenium.webdriver.common.by import By

    return {"css": By.CSS_SELECTOR, "id": By.ID, "tag": By.TAG_NAME, "link": By.LINK_TEXT}[kind]


def shot(driver: object, name: str) -> None:
    """The whole page, not only the window (DevTools' capture beyond the viewport)."""
    import base64

    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script(  # type: ignore[attr-defined]
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
    )
    clip = {"x": 0, "y": 0, "width": 1280, "height": min(max(int(height), 600), 3000), "scale": 1}
    data = driver.execute_cdp_cmd(  # type: ignore[attr-defined]
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    (SHOTS / f"{name}.png").write_bytes(base64.b64decode(data["data"]))


def go(driver: object, element: object) -> None:
    """Click what leads to another page, and wait until that page has replaced this one."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(by("tag"), "html")  # type: ignore[attr-defined]
    element.click()  # type: ignore[attr-defined]
    WebDriverWait(driver, 60).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")


def log_of(root: Path, n: int = 1) -> list[str]:
    return git(root, "log", f"-{n}", "--format=%an|%s").splitlines()


def test_search_open_edit_see_history_revert_and_a_stale_page_conflicts(
    ui: Running, seeded: Seeded, browser: object
) -> None:
    d = browser
    rate = seeded.ids["rate"]
    path = seeded.root / "memory" / f"{rate}.md"
    d.get(ui.login)  # type: ignore[attr-defined]
    files = len(list((seeded.root / "memory").glob("*.md")))
    assert d.find_element(by("id"), "summary").text.startswith(f"{files} memories,")  # type: ignore[attr-defined]
    assert len(d.find_elements(by("css"), "tr.hit")) == min(files, 50)  # type: ignore[attr-defined]
    shot(d, "memories")

    # search and open a memory
    box = d.find_element(by("id"), "q")  # type: ignore[attr-defined]
    box.send_keys("idempotent retry 429")
    go(d, d.find_element(by("id"), "search-button"))
    titles = [e.text for e in d.find_elements(by("css"), "a.hit-title")]  # type: ignore[attr-defined]
    assert titles[0] == "Rate limits", titles
    shot(d, "search")
    go(d, d.find_element(by("link"), "Rate limits"))
    assert d.find_element(by("id"), "title").text == "Rate limits"  # type: ignore[attr-defined]
    assert "only for idempotent endpoints" in d.find_element(by("id"), "body").text  # type: ignore[attr-defined]
    assert d.find_element(by("id"), "source").text == "agent-a"  # type: ignore[attr-defined]
    shot(d, "memory")

    # edit it: the same conditional edit as an agent's, by `human`
    area = d.find_element(by("id"), "edit-body")  # type: ignore[attr-defined]
    area.clear()
    area.send_keys("Retry on HTTP 429: back off 5 s, and only for idempotent endpoints.")
    d.find_element(by("id"), "edit-reason").send_keys("the gateway asks for 5 s now")  # type: ignore[attr-defined]
    go(d, d.find_element(by("id"), "save"))
    assert "back off 5 s" in d.find_element(by("tag"), "main").text, d.page_source  # type: ignore[attr-defined]
    assert "back off 5 s" in path.read_text(encoding="utf-8")
    assert log_of(seeded.root) == [f"human|replace {rate}: the gateway asks for 5 s now"]

    # the edit in its history, with its diff
    go(d, d.find_element(by("id"), "history-link"))
    first = d.find_elements(by("css"), "li.version")[0]  # type: ignore[attr-defined]
    assert "person" in first.text and "human" in first.text
    added = [e.text for e in first.find_elements(by("css"), ".d-add")]
    removed = [e.text for e in first.find_elements(by("css"), ".d-del")]
    assert any("back off 5 s" in a for a in added) and any("back off 2 s" in r for r in removed)
    shot(d, "history")

    # revert it from the page
    older = d.find_elements(by("css"), "li.version")[1]  # type: ignore[attr-defined]
    go(d, older.find_element(by("css"), "button.revert"))
    top = d.find_elements(by("css"), "li.version")[0]  # type: ignore[attr-defined]
    assert f"revert {rate}" in top.text and "human" in top.text
    assert "back off 2 s" in path.read_text(encoding="utf-8")
    assert log_of(seeded.root)[0].startswith(f"human|revert {rate} to ")

    # a stale page: someone else edits meanwhile; saving shows a conflict with their text, overwrites nothing
    d.get(f"{ui.base}/m/user/{rate}")  # type: ignore[attr-defined]
    store = open_store(seeded.root, embedder=HashEmbedder())
    try:
        store.edit(rate, "append", store.read(rate)["version"], author="agent-z", text="Also on 503.")
        store.flush_commits()
    finally:
        store.close()
    area = d.find_element(by("id"), "edit-body")  # type: ignore[attr-defined]
    area.clear()
    area.send_keys("A stale rewrite.")
    go(d, d.find_element(by("id"), "save"))
    assert "changed since" in d.find_element(by("id"), "conflict").text  # type: ignore[attr-defined]
    assert "Also on 503." in d.find_element(by("id"), "current").text  # type: ignore[attr-defined]
    assert "A stale rewrite." in d.find_element(by("id"), "mine").text  # type: ignore[attr-defined]
    text = path.read_text(encoding="utf-8")
    assert "Also on 503." in text and "A stale rewrite." not in text
    assert log_of(seeded.root)[0].startswith("agent-z|")
    shot(d, "conflict")

    # the store's timeline says who did what
    d.get(f"{ui.base}/history")  # type: ignore[attr-defined]
    rows = [e.text for e in d.find_elements(by("css"), "tr.commit")]  # type: ignore[attr-defined]
    assert any("person" in r and f"revert {rate}" in r for r in rows)
    assert any("sleep" in r and "somna-sleep" in r for r in rows)
    assert any("agent" in r and "agent-z" in r for r in rows)
    shot(d, "timeline")
    go(d, d.find_element(by("css"), "tr.commit a"))  # the newest: agent-z's append
    assert "agent-z" in d.find_element(by("tag"), "main").text  # type: ignore[attr-defined]
    assert any("Also on 503." in e.text for e in d.find_elements(by("css"), ".d-add"))  # type: ignore[attr-defined]


def test_accept_one_proposal_and_reject_another(ui: Running, seeded: Seeded, browser: object) -> None:
    d = browser
    d.get(ui.login)  # type: ignore[attr-defined]
    d.get(f"{ui.base}/review")  # type: ignore[attr-defined]
    listed = [e.get_attribute("href") for e in d.find_elements(by("css"), "a.proposal-link")]  # type: ignore[attr-defined]
    assert any(seeded.proposals["accept"] in h for h in listed) and any(
        seeded.proposals["reject"] in h for h in listed
    )
    sleep_links = [h for h in listed if "/sleep-" in h or "supersede" in h]
    shot(d, "review")

    accept, reject = seeded.proposals["accept"], seeded.proposals["reject"]
    d.get(f"{ui.base}/review/user/{accept}")  # type: ignore[attr-defined]
    assert any("Tag the release first." in e.text for e in d.find_elements(by("css"), ".d-add"))  # type: ignore[attr-defined]
    go(d, d.find_element(by("id"), "accept"))
    assert f"accepted {accept}" in d.find_element(by("id"), "done").text  # type: ignore[attr-defined]
    deploy = (seeded.root / "memory" / f"{seeded.ids['deploy']}.md").read_text(encoding="utf-8")
    assert "Tag the release first." in deploy
    assert not (seeded.root / "proposals" / f"{accept}.md").exists()
    assert log_of(seeded.root)[0].startswith(f"human|accept proposal {accept}")

    d.get(f"{ui.base}/review/user/{reject}")  # type: ignore[attr-defined]
    d.find_element(by("id"), "reject-reason").send_keys("the docs use mkdocs")  # type: ignore[attr-defined]
    go(d, d.find_element(by("id"), "reject"))
    assert f"rejected {reject}" in d.find_element(by("id"), "done").text  # type: ignore[attr-defined]
    docs = (seeded.root / "memory" / f"{seeded.ids['docs']}.md").read_text(encoding="utf-8")
    assert "hand-written" not in docs
    assert not (seeded.root / "proposals" / f"{reject}.md").exists()
    assert log_of(seeded.root) == [f"human|reject proposal {reject}: the docs use mkdocs"]
    remaining = [e.get_attribute("href") for e in d.find_elements(by("css"), "a.proposal-link")]  # type: ignore[attr-defined]
    assert not any(accept in h or reject in h for h in remaining)

    # sleep-time's queued change: its rationale, evidence, and what the exam says
    if sleep_links:
        d.get(sleep_links[0])  # type: ignore[attr-defined]
        assert d.find_element(by("id"), "rationale").text  # type: ignore[attr-defined]
        assert d.find_element(by("id"), "evidence").text.startswith("{")  # type: ignore[attr-defined]
        go(d, d.find_element(by("id"), "ask-exam"))
        assert d.find_element(by("id"), "breaks").text  # type: ignore[attr-defined]
        shot(d, "proposal")


def test_a_sleep_report_and_the_learning_chart(ui: Running, seeded: Seeded, browser: object) -> None:
    d = browser
    d.get(ui.login)  # type: ignore[attr-defined]
    d.get(f"{ui.base}/sleep")  # type: ignore[attr-defined]
    reports = sorted((seeded.root / ".somna" / "sleep" / "reports").glob("*.json"))
    assert len(reports) == 1
    link = d.find_element(by("css"), "a.report-link")  # type: ignore[attr-defined]
    shot(d, "sleep")
    go(d, link)
    assert d.find_element(by("id"), "report-title").text.startswith("Sleep cycle ")  # type: ignore[attr-defined]
    summary = d.find_element(by("id"), "report-summary").text  # type: ignore[attr-defined]
    import json

    data = json.loads(reports[0].read_text(encoding="utf-8"))
    assert f"queued for review {len(data['queued'])}" in summary
    assert f"dropped {len(data['dropped'])}" in summary
    if data["queued"]:
        assert d.find_elements(by("css"), "#queued li")  # type: ignore[attr-defined]
    shot(d, "report")

    d.get(f"{ui.base}/learning")  # type: ignore[attr-defined]
    charts = d.find_elements(by("css"), "#charts svg.chart")  # type: ignore[attr-defined]
    assert len(charts) == 5
    lines = d.find_elements(by("css"), "#charts svg.chart polyline")  # type: ignore[attr-defined]
    assert len(lines) == 4  # size, tokens and both feedback series span 8 days; the exam has one cycle
    assert len(d.find_elements(by("css"), "#charts figure:first-child circle")) == 8  # type: ignore[attr-defined]
    assert "active memories" in d.find_element(by("id"), "active").text  # type: ignore[attr-defined]
    shot(d, "learning")


def test_a_hostile_memory_renders_inert(ui: Running, seeded: Seeded, browser: object) -> None:
    d = browser
    d.get(ui.login)  # type: ignore[attr-defined]
    d.get(f"{ui.base}/m/user/{seeded.ids['hostile']}")  # type: ignore[attr-defined]
    body = d.find_element(by("id"), "body")  # type: ignore[attr-defined]
    assert "<script>" in body.text and "onerror" in body.text  # shown as text
    assert body.find_elements(by("tag"), "script") == [] and body.find_elements(by("tag"), "img") == []
    hrefs = [a.get_attribute("href") for a in body.find_elements(by("tag"), "a")]
    assert hrefs == ["https://example.com/docs"], hrefs  # javascript:, file: and the entity trick stay text
    for a in body.find_elements(by("tag"), "a"):
        assert a.get_attribute("href").startswith("https://")
    assert d.execute_script("return document.body.dataset.ready") == "1"  # type: ignore[attr-defined]  # our script ran
    assert d.execute_script("return document.body.dataset.pwned || null") is None  # type: ignore[attr-defined]
    assert d.execute_script("return document.scripts.length") == 1  # type: ignore[attr-defined]  # ui.js only
    logs = [e["message"] for e in d.get_log("browser")]  # type: ignore[attr-defined]
    assert not [m for m in logs if "pwned" in m], logs
    shot(d, "hostile")


def request(
    base: str, method: str, path: str, *, headers: dict[str, str] | None = None, body: str = ""
) -> tuple[int, dict[str, str], str]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request(method, path, body=body.encode() if body else None, headers=headers or {})
        resp = conn.getresponse()
        return (
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            resp.read().decode("utf-8", "replace"),
        )
    finally:
        conn.close()


def test_no_token_another_origin_another_host_or_a_used_link_is_refused_and_nothing_changes(
    ui: Running, seeded: Seeded
) -> None:
    rate = seeded.ids["rate"]
    path = seeded.root / "memory" / f"{rate}.md"
    before_text, before_log = path.read_text(encoding="utf-8"), log_of(seeded.root, 50)
    login = urlsplit(ui.login)
    status, headers, _ = request(ui.base, "GET", f"{login.path}?{login.query}")
    assert (
        status == 303 and "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
    )
    cookie = headers["set-cookie"].split(";")[0]
    assert request(ui.base, "GET", f"{login.path}?{login.query}")[0] == 403  # the link works once
    forged = login.query[:-4] + ("0000" if not login.query.endswith("0000") else "1111")
    assert request(ui.base, "GET", f"{login.path}?{forged}")[0] == 403

    version = re.search(r"^version: .*$", before_text, re.M)
    page = request(ui.base, "GET", f"/m/user/{rate}", headers={"Cookie": cookie})
    assert page[0] == 200
    csp = page[1]["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    base_version = re.search(r'name="base_version" value="([^"]+)"', page[2])
    assert base_version and version is None or base_version
    form = urlencode({"body": "Overwritten.", "base_version": base_version.group(1) if base_version else ""})
    post = {"Content-Type": "application/x-www-form-urlencoded"}
    own = {"Origin": ui.base}
    for path_, headers_ in (
        ("/", {}),  # no cookie, no token: the page itself
        (f"/m/user/{rate}", {}),
        (f"/m/user/{rate}", {"Cookie": "somna_ui=forged"}),
        (f"/m/user/{rate}", {"Authorization": "Bearer wrong"}),
    ):
        assert request(ui.base, "GET", path_, headers=headers_)[0] == 401, (path_, headers_)
    refusals = [
        ({**post, **own}, 401),  # a change without the cookie or the token
        ({**post, "Cookie": cookie, "Origin": "http://evil.example"}, 403),  # another Origin
        ({**post, "Cookie": cookie, "Origin": "http://127.0.0.1:1"}, 403),  # another port is another origin
        ({**post, "Cookie": cookie}, 403),  # no Origin at all
        ({**post, "Cookie": cookie, **own, "Host": "evil.example"}, 421),  # DNS rebinding
    ]
    for headers_, expected in refusals:
        got = request(ui.base, "POST", f"/m/user/{rate}/edit", headers=headers_, body=form)[0]
        assert got == expected, (headers_, got)
        got = request(ui.base, "POST", f"/review/user/{seeded.proposals['accept']}/accept", headers=headers_)[
            0
        ]
        assert got == expected, (headers_, got)
    assert path.read_text(encoding="utf-8") == before_text
    assert log_of(seeded.root, 50) == before_log
    assert (seeded.root / "proposals" / f"{seeded.proposals['accept']}.md").exists()
    # the same request from the page's own origin goes through: the refusals were the checks, not a bug
    ok = request(
        ui.base, "POST", f"/m/user/{rate}/edit", headers={**post, "Cookie": cookie, **own}, body=form
    )
    assert ok[0] == 303 and "Overwritten." in path.read_text(encoding="utf-8")
    # the bearer token of the store works too, as for serve --http
    token = (seeded.root / ".somna" / "http-token").read_text().strip()
    assert (seeded.root / ".somna" / "http-token").stat().st_mode & 0o777 == 0o600
    assert request(ui.base, "GET", "/", headers={"Authorization": f"Bearer {token}"})[0] == 200
    # nothing outside the store: a report name cannot climb out of the reports folder
    for bad in ("..%2F..%2F..%2Fetc%2Fpasswd", "..", ".hidden", "x%00y"):
        assert request(ui.base, "GET", f"/sleep/user/{bad}", headers={"Cookie": cookie})[0] in (400, 404)
    assert request(ui.base, "GET", "/static/..%2F..%2Fapp.py", headers={"Cookie": cookie})[0] == 404


class _Evil(BaseHTTPRequestHandler):
    """Another site: a page that posts a form to the somna page as soon as it loads."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802
        html = (
            f'<form id="f" method="post" action="{self.target}"><input name="body" value="CSRF was here.">'
            '<input name="base_version" value="x"></form><script>document.getElementById("f").submit()</script>'
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(html.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_a_cross_site_form_in_the_browser_is_refused(ui: Running, seeded: Seeded, browser: object) -> None:
    rate = seeded.ids["rate"]
    path = seeded.root / "memory" / f"{rate}.md"
    before_text, before_log = path.read_text(encoding="utf-8"), log_of(seeded.root, 50)
    d = browser
    d.get(ui.login)  # type: ignore[attr-defined]  # signed in: the browser holds the cookie
    _Evil.target = f"{ui.base}/m/user/{rate}/edit"
    evil = ThreadingHTTPServer(("127.0.0.2", 0), _Evil)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        d.get(f"http://127.0.0.2:{evil.server_address[1]}/")  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while d.current_url.startswith("http://127.0.0.2") and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.1)
        shown = d.find_element(by("tag"), "body").text  # type: ignore[attr-defined]
        assert "Origin not allowed" in shown or "not signed in" in shown, shown
    finally:
        evil.shutdown()
        evil.server_close()
    assert path.read_text(encoding="utf-8") == before_text
    assert log_of(seeded.root, 50) == before_log


def test_the_shared_server_serves_the_page_at_ui_behind_the_same_token(seeded: Seeded) -> None:
    from conftest import somna
    from test_http import http_server

    rate = seeded.ids["rate"]
    path = seeded.root / "memory" / f"{rate}.md"
    before = path.read_text(encoding="utf-8")
    with http_server(seeded.root) as server:
        base = f"http://127.0.0.1:{server.port}"
        assert request(base, "GET", "/ui/")[0] == 401  # no token, no cookie: refused on loopback too
        assert request(base, "GET", "/ui/", headers={"Authorization": "Bearer wrong"})[0] == 401
        link = somna("ui", "--link")
        assert link.returncode == 0, link.stderr
        login = urlsplit(link.stdout.strip())
        assert f"{login.scheme}://{login.netloc}" == base and login.path == "/ui/login"
        status, headers, _ = request(base, "GET", f"{login.path}?{login.query}")
        assert status == 303 and headers["location"] == "/ui/" and "Path=/ui" in headers["set-cookie"]
        cookie = headers["set-cookie"].split(";")[0]
        assert request(base, "GET", f"{login.path}?{login.query}")[0] == 403  # once
        page = request(base, "GET", f"/ui/m/user/{rate}", headers={"Cookie": cookie})
        assert page[0] == 200 and "Rate limits" in page[2] and 'href="/ui/static/ui.css"' in page[2]
        assert request(base, "GET", "/ui/static/ui.js")[0] == 200
        assert request(base, "GET", "/ui/", headers={"Authorization": f"Bearer {server.token}"})[0] == 200
        version = re.search(r'name="base_version" value="([^"]+)"', page[2])
        assert version
        form = urlencode({"body": "Rewritten from elsewhere.", "base_version": version.group(1)})
        post = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
        assert request(base, "POST", f"/ui/m/user/{rate}/edit", headers={**post, "Origin": "http://evil.example"},
                       body=form)[0] == 403  # fmt: skip
        assert path.read_text(encoding="utf-8") == before
        ok = request(base, "POST", f"/ui/m/user/{rate}/edit", headers={**post, "Origin": base}, body=form)
        assert ok[0] == 303 and ok[1]["location"] == f"/ui/m/user/{rate}"
        assert "Rewritten from elsewhere." in path.read_text(encoding="utf-8")
        assert log_of(seeded.root)[0].startswith(f"human|replace {rate}")
    assert somna("ui", "--link").returncode == 1  # no shared server any more
