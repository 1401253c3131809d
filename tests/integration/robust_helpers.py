"""Support for the robustness suites (test_crash, test_leaks, test_load, test_http_abuse,
test_faults): a Server variant that can wrap the binary (e.g. in a private mount
namespace) and set its environment, raw-socket HTTP, and host resource snapshots.

Reuses helpers.py (Server, Client) from "e2e"; nothing here changes its behaviour.
"""

import os
import random
import re
import resource
import socket
import subprocess
import time

from helpers import Client, Server, free_loopback_port, require_binary, scaled

LONG = os.environ.get("CUTOR_LONG") == "1"


def raise_fd_limit(wanted=8192):
    """Raises this process's soft RLIMIT_NOFILE (children inherit it) as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class WrappedServer(Server):
    """`cutor serve` started as PREFIX + [binary, "serve", ...] with an optional env.

    With an empty prefix and env=None it behaves exactly like helpers.Server.
    `start(expect_exit=True)` is for starts that may fail on purpose: it returns once
    the process ended or answers /api/v1/health, whichever comes first.
    Like helpers.Server, stop() and kill9() fail on a sanitizer report in its stderr.
    """

    def __init__(self, data_dir, log_dir, extra_args=(), token=None, prefix=(), env=None):
        super().__init__(data_dir, log_dir, extra_args=extra_args, token=token)
        self.prefix = list(prefix)
        self.env = env

    def start(self, port=None, expect_exit=False):
        binary = require_binary()
        last_error = None
        for _ in range(3):
            self._starts += 1
            self.port = port or free_loopback_port()
            args = self.prefix + [
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
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=self.log_dir,
                    env=self.env,
                )
            self.client = Client("127.0.0.1", self.port, token=self.token)
            if expect_exit:
                # Returns once it exited or answers health; the caller asserts on which.
                deadline = time.monotonic() + scaled(30)
                while time.monotonic() < deadline and self.proc.poll() is None:
                    try:
                        if self.client.get("/api/v1/health", timeout=2).status == 200:
                            break
                    except OSError:
                        pass
                    time.sleep(0.05)
                return self
            try:
                self._wait_healthy()
                return self
            except AssertionError as e:
                last_error = e
                if self.proc is None or self.proc.poll() is None or port is not None:
                    self.stop()
                    raise
        raise last_error


# --- raw HTTP over one socket ---------------------------------------------------------


def connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(sock, timeout, limit=1 << 22):
    """Reads until EOF/reset or `timeout` s; returns (bytes, closed)."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline and len(data) < limit:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")


def parse_responses(data):
    """Splits a byte stream of HTTP/1.1 responses (Content-Length framed) into
    [(status, headers dict lower-case, body)]; stops at the first incomplete one."""
    out = []
    pos = 0
    while pos < len(data):
        m = _STATUS_LINE.match(data, pos)
        if not m:
            raise AssertionError(f"not an HTTP response at byte {pos}: {data[pos:pos + 200]!r}")
        end = data.find(b"\r\n\r\n", m.end() - 2)
        if end < 0:
            break
        headers = {}
        for line in data[m.end():end].split(b"\r\n"):
            if not line:
                continue
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode("latin-1")
        body_start = end + 4
        if int(m.group(1)) in (100, 204, 304):
            length = 0
        else:
            length = int(headers.get("content-length", "0"))
        if body_start + length > len(data):
            break
        out.append((int(m.group(1)), headers, data[body_start:body_start + length]))
        pos = body_start + length
    return out


def http_bytes(method, path, body=b"", headers=None):
    hdrs = {"Host": "127.0.0.1"}
    if body:
        hdrs["Content-Length"] = str(len(body))
    if headers:
        hdrs.update(headers)
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    return head.encode() + b"\r\n" + body


def timed_health(client, timeout=5.0):
    """Seconds one fresh-connection GET /api/v1/health took; asserts 200."""
    t0 = time.monotonic()
    r = client.get("/api/v1/health", timeout=timeout)
    dt = time.monotonic() - t0
    assert r.status == 200, r
    return dt


# --- host resources of one server -------------------------------------------------------


def _children_map():
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid):
    children = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def own_cgroup_dirs(pid):
    """Hierarchy dirs holding `pid` (v1 controllers and the v2 tree), skipping roots."""
    dirs = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers.startswith("name="):
                continue
            mount = "/sys/fs/cgroup/unified" if controllers == "" else None
            if mount is None:
                for c in controllers.split(","):
                    if os.path.isdir(f"/sys/fs/cgroup/{c}"):
                        mount = f"/sys/fs/cgroup/{c}"
                        break
            if mount is None:
                continue
            # The server may have moved itself into a cutor-server leaf: look from above it.
            if path.endswith("/cutor-server"):
                path = path[: -len("/cutor-server")]
            if path in ("", "/"):
                continue
            dirs.append(mount + path)
    return sorted(set(dirs))


def stage_cgroups(pid, cgroup_roots):
    """Stage cgroup dirs this server made (named stage-<pid>-N) below `cgroup_roots`."""
    found = []
    marker = f"stage-{pid}-"
    for root in cgroup_roots:
        for dirpath, dirnames, _ in os.walk(root):
            for d in dirnames:
                if d.startswith(marker):
                    found.append(os.path.join(dirpath, d))
    return sorted(found)


def mount_points_below(path):
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if mp == real or mp.startswith(real + "/"):
                out.append(mp)
    return out


def count_host_mounts():
    with open("/proc/self/mountinfo") as f:
        return sum(1 for _ in f)


def fd_targets(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return sorted(out)


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def dir_entries(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def dir_size(path):
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for n in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


def token(n=12):
    return "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))
