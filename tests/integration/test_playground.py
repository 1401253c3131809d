"""The web playground at / (docs/playground.md) in a real headless Chromium, driven over
WebDriver (webdriver.py): submit a program and watch it run, the submissions list with a
filter, evict a dependency, the dashboard from /metrics, the token prompt of a server with
--auth-token-file. Screenshots go to <build dir>/test-artifacts/playground/ (the build dir
is the one holding CUTOR_BIN; CUTOR_ARTIFACTS_DIR overrides it).
"""

import os
import re
import uuid

import pytest

from helpers import Server, cutor_bin, submission, wait_until
from webdriver import Browser

SOURCE_DIR = os.environ.get(
    "CUTOR_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
NIXPKGS = os.path.join(SOURCE_DIR, "tests", "nixpkgs")
MAKE_NIX = "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ pkgs.gnumake ]; }"


def artifacts_dir():
    if os.environ.get("CUTOR_ARTIFACTS_DIR"):
        return os.path.join(os.environ["CUTOR_ARTIFACTS_DIR"], "playground")
    build_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(cutor_bin()))))
    return os.path.join(build_dir, "test-artifacts", "playground")


@pytest.fixture(scope="module")
def nix_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("playground")
    srv = Server(
        base / "data",
        base,
        extra_args=["--workers", "2", "--nix-path", f"nixpkgs={NIXPKGS}", "--substituters", ""],
    )
    srv.start()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def browser():
    with Browser(artifacts_dir()) as b:
        yield b
        pids = b.browser_pids()
    assert not b.browser_pids(), f"chromium processes left after the session: {pids}"
    assert b.driver is None


def open_page(b, srv):
    b.get(f"http://127.0.0.1:{srv.port}/")
    b.wait(lambda: b.script("return document.body.dataset.ready === 'true'"), "page ready")


def csp_violations(b):
    """The Content-Security-Policy refusals Chromium logged since the last call."""
    return [m["message"] for m in b.browser_log() if "Content Security Policy" in m["message"]]


def test_page_is_served_with_its_headers(nix_server):
    c = nix_server.client
    r = c.get("/")
    assert r.status == 200, r
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'", csp
    assert directives["script-src"] == "'self'", csp  # no inline script, no eval, no CDN
    assert directives["connect-src"] == "'self'", csp
    assert b"<script type=\"module\" src=\"/assets/app.js\"></script>" in r.body
    assert b"<script>" not in r.body  # no inline script for the CSP to refuse
    js = c.get("/assets/app.js")
    assert js.status == 200 and js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert b"cm-editor" in js.body, "the bundle lacks CodeMirror"  # built from npm, not a stub
    assert c.get("/assets/app.css").headers["content-type"] == "text/css; charset=utf-8"
    # Revalidation: the same ETag answers 304 without a body.
    again = c.get("/", headers={"If-None-Match": r.headers["etag"]})
    assert again.status == 304 and again.body == b"", again
    assert c.post("/", b"x").status == 405
    assert c.get("/assets/nothing.js").status == 404


def test_submit_and_watch_it_run(nix_server, browser):
    b = browser
    open_page(b, nix_server)
    assert b.text("#server-version") == "cutor 0.1.0"
    b.click('#file-tabs button[data-file="run.sh"]')
    b.replace_text("#editor .cm-content", "echo start; read name; sleep 2; echo bye $name >&2")
    b.type("#stdin", "ada")
    b.click("#limits-summary")
    b.type("#limit-run-wall_time_ms", "20000")
    b.click("#run")
    b.wait_text("#status", "RUNNING", timeout=60)
    b.screenshot("1-running")
    b.wait_text("#status", "FINISHED", timeout=60)
    assert b.text("#result") == "OK"
    assert b.content("#output") == "start\nbye ada\n"
    assert b.content('#stages [data-stage="run"] .stdout') == "start\n"
    assert b.content('#stages [data-stage="run"] .stderr') == "bye ada\n"
    assert b.text('#stages [data-stage="run"] h4 .badge') == "OK"
    assert b.text('#stages [data-stage="compile"] h4 .badge') == "SKIPPED"
    b.screenshot("2-finished")
    sid = b.text("#submission-id").split(" ")[0]
    # What the page sent is what the server stored and ran.
    s = nix_server.client.get_submission(sid)
    assert s["result"] == "OK" and s["run"]["stdout"] == "start\n", s
    assert csp_violations(b) == []


def test_submissions_list_filters_by_status(nix_server, browser):
    b = browser
    c = nix_server.client
    done = c.run(submission({"run.sh": "echo listed"}))
    queued = c.submit(submission({"run.sh": "sleep 30"}))["id"]
    try:
        open_page(b, nix_server)
        b.click('#views button[data-view="submissions"]')
        b.wait(lambda: done["id"] in b.text("#submissions-table"), "the finished submission listed")
        b.script(
            "const s = document.getElementById('filter-status'); s.value = 'FINISHED';"
            "s.dispatchEvent(new Event('change'));"
        )
        b.wait(lambda: queued not in b.text("#submissions-table")
               and done["id"] in b.text("#submissions-table"), "only FINISHED ones")
        rows = [r for r in b.text("#submissions-table tbody").split("\n") if r]
        assert rows and all(" FINISHED " in r for r in rows), rows
        b.screenshot("3-submissions-finished")
    finally:
        c.delete(f"/api/v1/submissions/{queued}")


def test_evict_a_dependency(nix_server, browser):
    b = browser
    c = nix_server.client
    r = c.post("/api/v1/dependencies", {"nix": f"# {uuid.uuid4()}\n{MAKE_NIX}"})
    assert r.status == 202, r
    key = r.json()["key"]

    def entry():
        for d in c.get("/api/v1/dependencies").json()["dependencies"]:
            if d["key"] == key:
                return d
        return None

    wait_until(lambda: (entry() or {}).get("state") == "ready", 60, what="ready")
    open_page(b, nix_server)
    b.click('#views button[data-view="dependencies"]')
    row = f'#dependencies-table tr[data-key="{key}"]'
    b.wait(lambda: b.find_all(row), "the dependency's row")
    assert "gnumake 4.3" in b.text(row), b.text(row)
    assert b.text(f"{row} .state") == "ready"
    b.screenshot("4-dependencies")
    b.click(f"{row} button.evict")
    wait_until(lambda: entry() is None, 60, what="evicted by the page's DELETE")
    b.click("#dependencies-refresh")
    b.wait(lambda: not b.find_all(row), "the row gone")
    b.screenshot("5-evicted")


def test_dashboard_shows_the_metrics(nix_server, browser):
    b = browser
    c = nix_server.client
    c.run(submission({"run.sh": "true"}))
    metrics = c.get("/metrics").body.decode()
    run_count = int(re.search(r'^cutor_stage_duration_seconds_count\{stage="run"\} (\d+)$',
                              metrics, re.M).group(1))
    open_page(b, nix_server)
    b.click('#views button[data-view="dashboard"]')
    b.wait(lambda: b.text("#queue-depth") == "0", "queue depth 0")
    b.wait(lambda: b.find_all('#stage-histograms figure[data-stage="run"] rect'), "run histogram")
    caption = b.text('#stage-histograms figure[data-stage="run"] figcaption')
    # Nothing else runs on this server meanwhile: the count shown is the one read above.
    assert caption == f"run ({run_count})", caption
    b.wait(lambda: b.text("#throughput") != "–", "a throughput figure")
    b.screenshot("6-dashboard")


def test_token_prompt(tmp_path_factory, browser):
    b = browser
    base = tmp_path_factory.mktemp("playground-auth")
    token_file = base / "tokens"
    token_file.write_text("s3cret-token\n")
    srv = Server(base / "data", base, extra_args=["--auth-token-file", str(token_file)],
                 token="s3cret-token")
    srv.start()
    try:
        # The page needs no token; the API does.
        anonymous = srv.client.get("/", token="")
        assert anonymous.status == 200
        b.get(f"http://127.0.0.1:{srv.port}/")
        b.wait(lambda: b.script("return document.getElementById('token-dialog').open"),
               "the token prompt")
        b.screenshot("7-token-prompt")
        b.type("#token-input", "wrong")
        b.click("#token-submit")
        b.wait(lambda: b.text("#token-error") == "That token is not accepted.", "refusal shown")
        b.type("#token-input", "s3cret-token")
        b.click("#token-submit")
        b.wait(lambda: b.script("return document.body.dataset.ready === 'true'"), "page ready")
        assert b.text("#server-version") == "cutor 0.1.0 · token required"
        b.click('#file-tabs button[data-file="run.sh"]')
        b.replace_text("#editor .cm-content", "echo authorized")
        b.click("#run")
        b.wait_text("#status", "FINISHED", timeout=60)
        assert b.content("#output") == "authorized\n"
        b.screenshot("8-token-accepted")
    finally:
        srv.cleanup()
