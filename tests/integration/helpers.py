"""Helpers for cutor's end-to-end tests: a server process and an HTTP client.

Only the Python standard library. Every network call has a socket timeout and every
poll has a deadline, so a broken server makes a test fail, never hang.
"""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid

DEFAULT_BIN = "/work/main/build-lead/src/cli/cutor"

# SPEC §1: the order statuses move in.
STATUS_ORDER = [
    "QUEUED",
    "SETTING_UP_ENVIRONMENT",
    "BUILDING",
    "COMPILING",
    "RUNNING",
    "FINISHED",
]
STAGES = ["environment", "build", "compile", "run"]
LIMITED_STAGES = ["environment", "compile", "run"]
LIMIT_NAMES = [
    "cpu_time_ms",
    "wall_time_ms",
    "memory_bytes",
    "processes",
    "output_bytes",
    "file_size_bytes",
]
STAGE_STATUSES = {
    "PENDING",
    "RUNNING",
    "SKIPPED",
    "OK",
    "NONZERO_EXIT",
    "SIGNALED",
    "TIME_LIMIT_EXCEEDED",
    "WALL_TIME_LIMIT_EXCEEDED",
    "MEMORY_LIMIT_EXCEEDED",
    "OUTPUT_LIMIT_EXCEEDED",
    "INTERNAL_ERROR",
}
RESULTS = {
    "OK",
    "ENVIRONMENT_ERROR",
    "BUILD_ERROR",
    "COMPILE_ERROR",
    "RUNTIME_ERROR",
    "TIME_LIMIT_EXCEEDED",
    "MEMORY_LIMIT_EXCEEDED",
    "OUTPUT_LIMIT_EXCEEDED",
    "CANCELLED",
    "INTERNAL_ERROR",
}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def cutor_bin():
    return os.environ.get("CUTOR_BIN") or DEFAULT_BIN


def _is_sanitizer_build(path):
    """True when the binary links the ASan runtime (GCC puts libasan.so in DT_NEEDED,
    whose strings sit in the first pages; Clang's static runtime defines __asan_init)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return False
    return b"libasan.so" in head or b"__asan_init" in head


def _slowdown():
    value = os.environ.get("CUTOR_TEST_SLOWDOWN")
    if value:
        factor = float(value)
        assert factor >= 1.0, f"CUTOR_TEST_SLOWDOWN={value!r} must be >= 1"
        return factor
    return 3.0 if _is_sanitizer_build(cutor_bin()) else 1.0


# How much slower than a Debug build the binary under test is: CUTOR_TEST_SLOWDOWN, or 3
# for a sanitizer build (ASan+UBSan run the server 2-3x slower, and a forked box inherits
# the instrumented heap). It scales bounds on how fast cutor itself is (start-up, stop, a
# quick job finishing, a `cutor run`, health under load), never the limits a test checks
# are enforced (a 300 ms wall limit still means 300 ms).
SLOWDOWN = _slowdown()


def scaled(seconds):
    """A bound on cutor's own speed, stretched for slow (sanitizer) builds."""
    return seconds * SLOWDOWN


HEALTH_TIMEOUT_S = scaled(10.0)
STOP_GRACE_S = scaled(15.0)  # SIGTERM, then SIGKILL after this long
FINISH_TIMEOUT_S = scaled(60.0)  # how long a quick submission may take to finish

# What sanitizer builds (CMAKE_BUILD_TYPE=Asan) print on stderr: a report fails the test
# that ran the server, whether the server went on running (UBSan, LeakSanitizer at exit)
# or died of it.
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
)


def sanitizer_report(text):
    """The first sanitizer report in `text` (with some context), or None."""
    for marker in SANITIZER_MARKERS:
        at = text.find(marker)
        if at >= 0:
            return text[max(0, at - 200):at + 6000]
    return None


def require_binary():
    path = cutor_bin()
    assert os.path.isfile(path) and os.access(path, os.X_OK), (
        f"cutor binary not found or not executable at {path!r} "
        "(set CUTOR_BIN or build the lead's tree)"
    )
    return path


def free_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_list(mapping):
    """A dict name -> content (str) or (content, encoding) as the `files` array."""
    out = []
    for name, content in mapping.items():
        if isinstance(content, tuple):
            out.append({"name": name, "content": content[0], "encoding": content[1]})
        else:
            out.append({"name": name, "content": content})
    return out


def submission(files, **extra):
    body = {"files": files_list(files) if isinstance(files, dict) else files}
    body.update(extra)
    return body


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(
                f"response {self.status} is not JSON: {self.body[:500]!r}"
            ) from e

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


class Client:
    """A tiny HTTP client for one server; a fresh connection per request."""

    def __init__(self, host, port, token=None, timeout=30.0):
        self.host = host
        self.port = port
        self.token = token
        self.timeout = timeout
        self._info = None

    def request(self, method, path, body=None, headers=None, timeout=None, token=None):
        hdrs = {}
        tok = token if token is not None else self.token
        if tok:
            hdrs["Authorization"] = f"Bearer {tok}"
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if headers:
            hdrs.update(headers)
        # A header given as None is removed (e.g. to send no Content-Type).
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.getheaders(), data)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # --- the API, one call each -------------------------------------------------

    def info(self):
        if self._info is None:
            r = self.get("/api/v1/info")
            assert r.status == 200, r
            self._info = r.json()
        return self._info

    def wait_timeout(self):
        """A socket timeout comfortably above the server's long-poll bound."""
        return self.info()["max_wait_ms"] / 1000.0 + 15.0

    def submit(self, body, expect=202):
        r = self.post("/api/v1/submissions", body)
        assert r.status == expect, r
        return r.json()

    def get_submission(self, sid, query=""):
        r = self.get(f"/api/v1/submissions/{sid}{query}")
        assert r.status == 200, r
        return r.json()

    def wait_finished(self, sid, timeout=FINISH_TIMEOUT_S, query=""):
        """Long-polls (?wait=true) until FINISHED or the deadline; returns the submission."""
        deadline = time.monotonic() + timeout
        sep = "&" if query else "?"
        last = None
        while time.monotonic() < deadline:
            r = self.get(
                f"/api/v1/submissions/{sid}{query}{sep}wait=true", timeout=self.wait_timeout()
            )
            assert r.status == 200, r
            last = r.json()
            if last["status"] == "FINISHED":
                return last
            time.sleep(0.05)  # the server bounded its wait; ask again
        raise AssertionError(f"submission {sid} did not finish in {timeout}s; last: {last}")

    def run(self, body, timeout=FINISH_TIMEOUT_S, query=""):
        """Submits and waits until FINISHED."""
        sid = self.submit(body)["id"]
        return self.wait_finished(sid, timeout=timeout, query=query)

    def poll_until(self, sid, predicate, timeout=30.0, interval=0.02):
        """GETs repeatedly until predicate(submission) holds; returns that submission."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.get_submission(sid)
            if predicate(last):
                return last
            time.sleep(interval)
        raise AssertionError(f"submission {sid}: condition not met in {timeout}s; last: {last}")

    def list_all(self, query=""):
        sep = "&" if query else "?"
        r = self.get(f"/api/v1/submissions{query}{sep}limit=1000")
        assert r.status == 200, r
        return r.json()["submissions"]

    def stored_count(self):
        return len(self.list_all())


class Server:
    """One `cutor serve` process on a free loopback port with its own data dir."""

    def __init__(self, data_dir, log_dir, extra_args=(), token=None):
        self.data_dir = str(data_dir)
        self.log_dir = str(log_dir)
        self.extra_args = list(extra_args)
        self.token = token
        self.proc = None
        self.port = None
        self.client = None
        self._starts = 0

    @property
    def stderr_path(self):
        return os.path.join(self.log_dir, f"server-{self._starts}.stderr")

    def stderr_text(self, limit=8000):
        try:
            with open(self.stderr_path, "rb") as f:
                data = f.read()
        except OSError:
            return "<no stderr>"
        return data[-limit:].decode("utf-8", "replace")

    def log_text(self):
        """What the server printed on stdout and stderr during its latest start."""
        text = ""
        for stream in ("stdout", "stderr"):
            path = os.path.join(self.log_dir, f"server-{self._starts}.{stream}")
            try:
                with open(path, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return text

    def start(self, port=None):
        binary = require_binary()
        last_error = None
        for _ in range(3):  # a picked port may be taken by someone else in between
            self._starts += 1
            self.port = port or free_loopback_port()
            args = [
                binary,
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data",
                self.data_dir,
            ] + self.extra_args
            with open(self.stderr_path, "wb") as err, open(
                os.path.join(self.log_dir, f"server-{self._starts}.stdout"), "wb"
            ) as out:
                self.proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.log_dir
                )
            self.client = Client("127.0.0.1", self.port, token=self.token)
            try:
                self._wait_healthy()
                return self
            except AssertionError as e:
                last_error = e
                if self.proc.poll() is None or port is not None:
                    self.stop()
                    raise
        raise last_error

    def _wait_healthy(self):
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"cutor serve exited with {self.proc.returncode} before answering "
                    f"/api/v1/health; output:\n{self.log_text()[-8000:]}"
                )
            try:
                r = self.client.get("/api/v1/health", timeout=2.0)
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(
            f"cutor serve did not answer /api/v1/health within {HEALTH_TIMEOUT_S}s; "
            f"output:\n{self.log_text()[-8000:]}"
        )

    def stop(self):
        """SIGTERM, SIGKILL after a bound; returns the exit status and asserts it exited."""
        if self.proc is None:
            return None
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
                raise AssertionError(
                    f"cutor serve ignored SIGTERM for {STOP_GRACE_S}s and was killed; "
                    f"output:\n{self.log_text()[-8000:]}"
                )
        self.assert_no_sanitizer_report()
        return p.returncode

    def kill9(self):
        p, self.proc = self.proc, None
        p.kill()
        p.wait(timeout=10)
        self.assert_no_sanitizer_report()

    def assert_no_sanitizer_report(self):
        """Fails if the latest start's stderr holds an ASan, LeakSanitizer or UBSan report."""
        try:
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return
        report = sanitizer_report(text)
        assert report is None, f"sanitizer report in {self.stderr_path}:\n{report}"

    def mounts_below_data_dir(self):
        real = os.path.realpath(self.data_dir)
        found = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mount_point = line.split()[4]
                if mount_point == real or mount_point.startswith(real + "/"):
                    found.append(mount_point)
        return found

    def cleanup(self):
        """Stops the server and removes its data dir, refusing to if a mount leaked into it."""
        try:
            self.stop()
        finally:
            leaked = self.mounts_below_data_dir()
            assert not leaked, f"mounts left below the data dir after the server stopped: {leaked}"
            shutil.rmtree(self.data_dir, ignore_errors=True)


# --- assertions shared by the suites ----------------------------------------------


def assert_error_shape(resp, status, code=None, field_check=None):
    """The reply has `status` and body {"error": {"code", "message", "field"}}."""
    assert resp.status == status, resp
    body = resp.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict), body
    for key in ("code", "message", "field"):
        assert key in err, f"error lacks {key!r}: {body}"
    assert isinstance(err["code"], str) and err["code"], body
    assert isinstance(err["message"], str) and err["message"], body
    assert err["field"] is None or isinstance(err["field"], str), body
    if code is not None:
        assert err["code"] == code, body
    if field_check is not None:
        assert field_check(err["field"]), f"unexpected field {err['field']!r}: {body}"
    return err


def assert_stage_shape(stage, where=""):
    expected = {
        "status",
        "stdout",
        "stderr",
        "output",
        "code",
        "signal",
        "time",
        "cpu_time_ms",
        "wall_time_ms",
        "memory_bytes",
        "truncated",
    }
    assert isinstance(stage, dict), f"{where}: {stage!r}"
    missing = expected - set(stage)
    assert not missing, f"{where}: stage lacks {sorted(missing)}: {stage}"
    assert stage["status"] in STAGE_STATUSES, f"{where}: {stage}"
    for k in ("stdout", "stderr", "output"):
        assert isinstance(stage[k], str), f"{where}.{k}: {stage}"
    assert stage["code"] is None or type(stage["code"]) is int, f"{where}.code: {stage}"
    assert stage["signal"] is None or (
        isinstance(stage["signal"], str) and stage["signal"].startswith("SIG")
    ), f"{where}.signal: {stage}"
    assert type(stage["time"]) in (int, float) and stage["time"] >= 0, f"{where}.time: {stage}"
    for k in ("cpu_time_ms", "wall_time_ms", "memory_bytes"):
        assert type(stage[k]) is int and stage[k] >= 0, f"{where}.{k}: {stage}"
    assert type(stage["truncated"]) is bool, f"{where}.truncated: {stage}"


def assert_idle_stage(stage, status, where=""):
    """A PENDING or SKIPPED stage: empty strings, null code and signal, zero numbers."""
    assert_stage_shape(stage, where)
    assert stage["status"] == status, f"{where}: {stage}"
    assert stage["stdout"] == "" and stage["stderr"] == "" and stage["output"] == "", stage
    assert stage["code"] is None and stage["signal"] is None, f"{where}: {stage}"
    assert stage["time"] == 0 and stage["cpu_time_ms"] == 0, f"{where}: {stage}"
    assert stage["wall_time_ms"] == 0 and stage["memory_bytes"] == 0, f"{where}: {stage}"
    assert stage["truncated"] is False, f"{where}: {stage}"


def assert_submission_shape(sub):
    for key in ("id", "status", "result", "created_at", "finished_at") + tuple(STAGES):
        assert key in sub, f"submission lacks {key!r}: {sub}"
    assert UUID_RE.match(sub["id"]), sub["id"]
    assert sub["status"] in STATUS_ORDER, sub
    assert TIMESTAMP_RE.match(sub["created_at"]), sub["created_at"]
    if sub["status"] == "FINISHED":
        assert sub["result"] in RESULTS, sub
        assert isinstance(sub["finished_at"], str) and TIMESTAMP_RE.match(sub["finished_at"]), sub
        assert sub["finished_at"] >= sub["created_at"], sub
    else:
        assert sub["result"] is None, sub
        assert sub["finished_at"] is None, sub
    for st in STAGES:
        assert_stage_shape(sub[st], st)


def is_subsequence(seq, order):
    """True when `seq` appears in `order` in the same relative order, no repeats."""
    pos = -1
    for item in seq:
        if item not in order:
            return False
        i = order.index(item)
        if i <= pos:
            return False
        pos = i
    return True


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text, validate=True)


def random_uuid():
    return str(uuid.uuid4())


def processes_with_marker(marker):
    """Host pids whose command line contains `marker` (sandboxed processes included)."""
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmd:
            pids.append(int(entry))
    return pids


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s")


SOURCE_DIR = os.environ.get("CUTOR_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_NIXPKGS = os.path.join(SOURCE_DIR, "tests", "nixpkgs")
TEST_RUNTIMES = os.path.join(SOURCE_DIR, "tests", "runtimes")


def catalogue_server(tmp_path_factory, name):
    """For a module fixture (`yield from`): a server with 2 workers, the test Nix channel
    and the test runtime catalogue; stopped and removed afterwards."""
    base = tmp_path_factory.mktemp(name)
    s = Server(base / "data", base, extra_args=[
        "--workers", "2", "--nix-path", f"nixpkgs={TEST_NIXPKGS}", "--substituters", "",
        "--runtimes", TEST_RUNTIMES])
    s.start()
    yield s
    s.cleanup()
