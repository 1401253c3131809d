"""A headless Chromium driven over the W3C WebDriver protocol (Debian's chromium and
chromium-driver), with only the Python standard library: chromedriver is an HTTP server
on a loopback port, each command one JSON request.

    with Browser(artifacts_dir) as b:
        b.get("http://127.0.0.1:8080/")
        b.click("#run")
        b.wait_text("#status", "FINISHED")
        b.screenshot("finished")          # <artifacts_dir>/finished.png

On exit the session is deleted, chromedriver stopped, and any process still running
with this browser's private profile directory killed (by pid), so no chromium is left.
"""

import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from helpers import free_loopback_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C element reference key
CTRL = "\ue009"
NULL_KEY = "\ue000"  # releases held modifiers


class WebDriverError(AssertionError):
    pass


class Browser:
    def __init__(self, artifacts_dir, width=1400, height=1000):
        self.artifacts_dir = str(artifacts_dir)
        self.size = (width, height)
        self.profile = tempfile.mkdtemp(prefix="cutor-chromium-")
        self.driver = None
        self.port = None
        self.session = None

    # --- life cycle ----------------------------------------------------------------------

    def __enter__(self):
        os.makedirs(self.artifacts_dir, exist_ok=True)
        self.port = free_loopback_port()
        self.driver_log = open(os.path.join(self.artifacts_dir, "chromedriver.log"), "wb")
        self.driver = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
            stdin=subprocess.DEVNULL, stdout=self.driver_log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if self._call("GET", "/status", timeout=2)["ready"]:
                    break
            except (OSError, WebDriverError):
                pass
            if time.monotonic() > deadline or self.driver.poll() is not None:
                self.__exit__(None, None, None)
                raise AssertionError("chromedriver did not become ready in 20 s")
            time.sleep(0.1)
        args = [
            "--headless=new", "--no-sandbox",  # root: Chromium's own sandbox refuses root
            "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            f"--user-data-dir={self.profile}", f"--window-size={self.size[0]},{self.size[1]}",
        ]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}}
        try:
            self.session = self._call("POST", "/session", caps, timeout=60)["sessionId"]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.session:
                self._call("DELETE", f"/session/{self.session}", timeout=20)
        except (OSError, WebDriverError):
            pass
        self.session = None
        if self.driver is not None:
            if self.driver.poll() is None:
                self.driver.terminate()
                try:
                    self.driver.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.driver.kill()
                    self.driver.wait(timeout=10)
            self.driver = None
            self.driver_log.close()
        self._kill_leftover_browsers()
        shutil.rmtree(self.profile, ignore_errors=True)
        return False

    def browser_pids(self):
        """Pids of processes started with this browser's profile directory."""
        pids = []
        marker = f"--user-data-dir={self.profile}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
        return pids

    def _kill_leftover_browsers(self):
        deadline = time.monotonic() + 10
        while (pids := self.browser_pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    # --- the protocol --------------------------------------------------------------------

    def _call(self, method, path, body=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            payload = json.loads(r.read() or b"{}")
        finally:
            conn.close()
        value = payload.get("value")
        if r.status != 200:
            raise WebDriverError(f"WebDriver {method} {path}: {r.status} {value}")
        return value

    def _s(self, method, path, body=None, timeout=30):
        return self._call(method, f"/session/{self.session}{path}", body, timeout)

    def get(self, url):
        self._s("POST", "/url", {"url": url}, timeout=60)

    def find(self, css):
        return self._s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def find_all(self, css):
        found = self._s("POST", "/elements", {"using": "css selector", "value": css})
        return [e[ELEMENT] for e in found]

    def click(self, css):
        self._s("POST", f"/element/{self.find(css)}/click", {})

    def type(self, css, text):
        self._s("POST", f"/element/{self.find(css)}/value", {"text": text})

    def replace_text(self, css, text):
        """Selects everything in the (contenteditable) element and inserts `text` over it as
        one text input (Chrome DevTools' Input.insertText: key by key, Chrome turns a space
        typed before other text into U+00A0 in a contenteditable)."""
        self.type(css, CTRL + "a" + NULL_KEY)
        self._s("POST", "/goog/cdp/execute", {"cmd": "Input.insertText", "params": {"text": text}})

    def text(self, css):
        return self._s("GET", f"/element/{self.find(css)}/text")

    def content(self, css):
        """The element's exact textContent (text() is the rendered, whitespace-folded text)."""
        return self.script("return document.querySelector(arguments[0]).textContent", css)

    def script(self, source, *args):
        return self._s("POST", "/execute/sync", {"script": source, "args": list(args)})

    def accept_alert(self):
        self._s("POST", "/alert/accept", {})

    def browser_log(self):
        """Chromium's console and network messages so far (chromedriver's log extension)."""
        return self._s("POST", "/se/log", {"type": "browser"})

    def screenshot(self, name):
        png = base64.b64decode(self._s("GET", "/screenshot"))
        path = os.path.join(self.artifacts_dir, f"{name}.png")
        with open(path, "wb") as f:
            f.write(png)
        return path

    def wait(self, predicate, what, timeout=30.0, interval=0.05):
        """Polls predicate() until it returns a true value (returned) or the deadline."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except WebDriverError as e:  # e.g. the element is not there yet
                last = e
            if last and not isinstance(last, Exception):
                return last
            time.sleep(interval)
        self.screenshot("timeout-" + "".join(c if c.isalnum() else "-" for c in what)[:60])
        raise AssertionError(f"browser: {what} not seen in {timeout}s; last: {last!r}")

    def wait_text(self, css, expected, timeout=30.0):
        return self.wait(lambda: self.text(css) == expected, f"{css} == {expected!r}", timeout)
