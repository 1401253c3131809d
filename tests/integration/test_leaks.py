"""Nothing leaked (issue 6, SPEC §6): after many submissions, hostile ones included,
the host is back to its baseline: the server's open fds and threads, host mounts,
processes, stage cgroups, workspace and temp dirs; and the data dir grows only with
the stored results.

The server gets a private TMPDIR, checked to end empty; the host's /tmp is shared
with suites running in parallel, so it is not compared.

CI: 300 submissions (a third hostile); CUTOR_LONG=1: 2,000.
"""

import json
from collections import Counter
import os
import re
import threading
import time

import pytest

from helpers import submission, wait_until
from robust_helpers import (
    LONG,
    WrappedServer,
    descendants,
    dir_entries,
    dir_size,
    fd_targets,
    mount_points_below,
    own_cgroup_dirs,
    stage_cgroups,
    thread_count,
    token,
)

TOTAL = 2000 if LONG else 300
SETTLE_S = 20.0
# Connections a store may keep on cutor.db (+ -wal, -shm): one per worker and HTTP
# thread and a writer, three files each.
DB_FDS_BOUND = 3 * (4 + 2 + 2)


QUICK = lambda tok: submission({"run.sh": f"echo {tok}; cat"}, stdin=tok)  # noqa: E731

# Hostile programs: each must end FINISHED with one of the results listed, and leave
# nothing behind. Limits keep them short.
HOSTILE = {
    "fork bomb": (
        submission({"run.sh": "b() { b | b & }; b; sleep 1"},
                   limits={"run": {"processes": 32, "wall_time_ms": 2000}}),
        {"OK", "RUNTIME_ERROR", "TIME_LIMIT_EXCEEDED"},
    ),
    "memory hog": (
        submission({"run.sh": "python3 -c 'b = bytearray(512 << 20); print(len(b))'"},
                   limits={"run": {"memory_bytes": 64 << 20, "wall_time_ms": 5000}}),
        {"MEMORY_LIMIT_EXCEEDED", "RUNTIME_ERROR"},
    ),
    "output flood": (
        submission({"run.sh": "yes leak"}, limits={"run": {"output_bytes": 65536, "wall_time_ms": 3000}}),
        {"OUTPUT_LIMIT_EXCEEDED"},
    ),
    "background child": (
        submission({"run.sh": "sleep 1000 & sleep 1000 & echo started"}),
        {"OK"},
    ),
    "setsid double fork": (
        submission({"run.sh": "setsid sh -c 'sleep 1000 & sleep 1000' & sleep 0.1; echo forked"}),
        {"OK"},
    ),
    "nohup and closed stdio": (
        submission({"run.sh": "nohup sleep 1000 >/dev/null 2>&1 </dev/null & exec >&- 2>&-; sleep 0.1"}),
        {"OK"},
    ),
    "many files": (
        submission({"run.sh": "mkdir d; i=0; while [ $i -lt 2000 ]; do : > d/f$i; i=$((i+1)); done; ls d | wc -l"}),
        {"OK"},
    ),
    "big file": (
        submission({"run.sh": "head -c 200000000 /dev/zero > big; ls -l big"},
                   limits={"run": {"file_size_bytes": 1 << 20, "wall_time_ms": 5000}}),
        {"RUNTIME_ERROR", "OUTPUT_LIMIT_EXCEEDED", "OK"},
    ),
    "fill tmp": (
        submission({"run.sh": "head -c 2000000000 /dev/zero > /tmp/fill; echo $?"},
                   limits={"run": {"wall_time_ms": 5000}}),
        {"OK", "RUNTIME_ERROR", "OUTPUT_LIMIT_EXCEEDED", "TIME_LIMIT_EXCEEDED"},
    ),
    "many fds": (
        submission({"run.sh": "python3 -c \"import os\nfds=[os.open('/dev/null', os.O_RDONLY) for _ in range(900)]\nprint(len(fds))\""}),
        {"OK", "RUNTIME_ERROR"},
    ),
    "cpu spin": (
        submission({"run.sh": "while :; do :; done"}, limits={"run": {"cpu_time_ms": 500, "wall_time_ms": 3000}}),
        {"TIME_LIMIT_EXCEEDED"},
    ),
    "sleep past wall": (
        submission({"run.sh": "sleep 30"}, limits={"run": {"wall_time_ms": 500}}),
        {"TIME_LIMIT_EXCEEDED"},
    ),
    "self segfault": (
        submission({"run.sh": "sh -c 'kill -SEGV $$'; kill -SEGV $$"}),
        {"RUNTIME_ERROR"},
    ),
    "compile error": (
        submission({"compile.sh": "echo nope >&2; exit 3", "run.sh": "echo never"}),
        {"COMPILE_ERROR"},
    ),
    "symlink escape": (
        submission({"compile.sh": "rm -f run.sh; ln -s /etc/shadow run.sh; ln -s / root", "run.sh": "true"}),
        {"OK", "RUNTIME_ERROR", "COMPILE_ERROR"},
    ),
    "fifo blocks": (
        submission({"run.sh": "mkfifo p; cat p"}, limits={"run": {"wall_time_ms": 500}}),
        {"TIME_LIMIT_EXCEEDED"},
    ),
    "stdin never read": (
        submission({"run.sh": "sleep 0.2"}, stdin="x" * (4 << 20)),
        {"OK"},
    ),
}
CANCEL_KIND = "cancelled while running"


def leak_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("leaks")
    server_tmp = base / "server-tmp"
    server_tmp.mkdir()
    env = dict(os.environ)
    env["TMPDIR"] = str(server_tmp)
    srv = WrappedServer(base / "data", base, extra_args=["--workers", "4"], env=env)
    srv.server_tmp = str(server_tmp)
    return srv


def normalize_fd(target):
    # socket:[1234] -> socket, pipe:[99] -> pipe, net:[4026532179] -> net (a prepared
    # network namespace is replaced by a fresh one after use); anon_inode:[eventfd] stays.
    # A prepared namespace's /proc/net views (the files its reuse check reads) are opened
    # through the pool thread's /proc/<pid>/task/<tid>/net/, which proc shows as
    # "(deleted)" once that thread has left the namespace: the same fd either way.
    target = re.sub(r"^(/proc/\d+/task/\d+/net/[a-z0-9_]+) \(deleted\)$", r"\1", target)
    return re.sub(r"^(socket|pipe|net):\[\d+\]$", r"\1", target)


def is_spawner(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() == "cutor-spawner"
    except OSError:
        return False


def host_mounts():
    """Mount point and source of every mount this process sees."""
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            out.add(f"{fields[4]} {fields[sep + 1]} {fields[sep + 2]}")
    return out


class Baseline:
    def __init__(self, srv):
        pid = srv.proc.pid
        self.pid = pid
        self.fds = sorted(normalize_fd(t) for t in fd_targets(pid))
        self.threads = thread_count(pid)
        self.host_mounts = host_mounts()
        self.data_mounts = mount_points_below(srv.data_dir)
        self.children = descendants(pid)
        self.cgroup_roots = own_cgroup_dirs(pid)
        self.stage_cgroups = stage_cgroups(pid, self.cgroup_roots)
        self.work = dir_entries(os.path.join(srv.data_dir, "work"))
        self.server_tmp = dir_entries(srv.server_tmp)
        self.data_top = dir_entries(srv.data_dir)
        self.data_size = dir_size(srv.data_dir)

    def differences(self, srv):
        now = Baseline(srv)
        diffs = []
        # The store's SQLite files may be opened by a pool of connections that grows
        # with concurrency: bounded, not exact. Every other fd must match exactly.
        db = os.path.realpath(srv.data_dir) + "/cutor.db"
        is_db = lambda t: t.startswith(db)  # noqa: E731
        other_now = [t for t in now.fds if not is_db(t)]
        other_base = [t for t in self.fds if not is_db(t)]
        if other_now != other_base:
            more = Counter(other_now) - Counter(other_base)
            fewer = Counter(other_base) - Counter(other_now)
            diffs.append(f"fds: {len(other_base)} -> {len(other_now)}: +{dict(more)} -{dict(fewer)}")
        db_fds = len(now.fds) - len(other_now)
        if db_fds > DB_FDS_BOUND:
            diffs.append(f"fds on the store's files: {db_fds} > {DB_FDS_BOUND}: "
                         f"{Counter(t for t in now.fds if is_db(t))}")
        if now.threads != self.threads:
            diffs.append(f"threads: {self.threads} -> {now.threads}")
        if now.data_mounts:
            diffs.append(f"mounts below the data dir: {now.data_mounts}")
        # Other tests on the host may mount things meanwhile: only cutor's count.
        new_mounts = [m for m in now.host_mounts - self.host_mounts
                      if m.startswith("/run/cutor") or os.path.realpath(srv.data_dir) in m]
        if new_mounts:
            diffs.append(f"new host mounts: {new_mounts}")
        # The box spawner (forked once at startup, see src/sandbox/spawner.h) lives as long
        # as the server: the same process at the baseline is no leak.
        children = [p for p in now.children if not (p in self.children and is_spawner(p))]
        if children:
            cmds = []
            for p in children:
                try:
                    cmds.append(open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ")[:100])
                except OSError:
                    pass
            diffs.append(f"processes below the server: {children} {cmds}")
        if now.stage_cgroups:
            diffs.append(f"stage cgroups left: {now.stage_cgroups[:10]}")
        if now.work:
            diffs.append(f"work dir entries: {now.work[:10]} ({len(now.work)})")
        if now.server_tmp != self.server_tmp:
            diffs.append(f"server TMPDIR entries: {now.server_tmp[:10]}")
        if now.data_top != self.data_top:
            diffs.append(f"data dir top level: {self.data_top} -> {now.data_top}")
        return diffs


def run_batch(c, n, hostile_every=3):
    """Submits n submissions from 4 threads, a third hostile; waits for each and checks
    its result. Returns the total size of the finished submissions' JSON."""
    kinds = sorted(HOSTILE) + [CANCEL_KIND]
    plan = []
    for i in range(n):
        if i % hostile_every == 0:
            plan.append(kinds[(i // hostile_every) % len(kinds)])
        else:
            plan.append(None)
    errors = []
    stored_bytes = [0]  # what the API returns for each, plus its request body
    lock = threading.Lock()
    it = iter(enumerate(plan))

    def worker():
        while True:
            with lock:
                try:
                    i, kind = next(it)
                except StopIteration:
                    return
            try:
                if kind is None:
                    tok = token()
                    body = QUICK(tok)
                    s = c.run(body, timeout=120)
                    assert s["result"] == "OK" and s["run"]["stdout"] == f"{tok}\n{tok}", s
                elif kind == CANCEL_KIND:
                    body = submission({"run.sh": "echo go; sleep 30"})
                    sid = c.submit(body)["id"]
                    c.poll_until(sid, lambda s: s["status"] in ("RUNNING", "FINISHED"), timeout=60)
                    r = c.delete(f"/api/v1/submissions/{sid}")
                    assert r.status == 200, r
                    s = c.wait_finished(sid, timeout=60)
                    assert s["result"] == "CANCELLED", s
                else:
                    body, results = HOSTILE[kind]
                    s = c.run(body, timeout=120)
                    assert s["result"] in results, (kind, s["result"], s["run"])
                with lock:
                    stored_bytes[0] += len(json.dumps(s)) + len(json.dumps(body))
            except Exception as e:  # collected: one failing kind must not hide the others
                with lock:
                    errors.append(f"{kind or 'quick'}: {e}"[:2000])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"{len(errors)} submissions went wrong:\n" + "\n".join(errors[:10])
    return stored_bytes[0]


def settle(base, srv):
    """Waits for the server to give back what the batch took; returns the differences."""
    diffs = base.differences(srv)
    deadline = time.monotonic() + SETTLE_S
    while diffs and time.monotonic() < deadline:
        time.sleep(0.25)
        diffs = base.differences(srv)
    return diffs


@pytest.fixture
def leaky(tmp_path_factory):
    srv = leak_server(tmp_path_factory)
    yield srv
    srv.cleanup()


def test_host_is_back_to_baseline_after_hostile_batch(leaky):
    srv = leaky.start()
    c = srv.client
    # Warm up: every kind once, so lazily made things (threads, statement caches, the
    # cgroup parent) exist before the baseline.
    run_batch(c, 3 * (len(HOSTILE) + 1), hostile_every=1)
    base = settle_baseline(srv)
    stored = run_batch(c, TOTAL)
    diffs = settle(base, srv)
    assert not diffs, "after the batch:\n" + "\n".join(diffs)
    # The data dir grows only with stored submissions: bounded by their requests and
    # what the API returns for them (x3 for SQLite pages, indexes and WAL) plus 2 MiB.
    growth = dir_size(srv.data_dir) - base.data_size
    bound = 3 * stored + (2 << 20)
    sizes = {e: dir_size(os.path.join(srv.data_dir, e)) if os.path.isdir(os.path.join(srv.data_dir, e))
             else os.path.getsize(os.path.join(srv.data_dir, e)) for e in dir_entries(srv.data_dir)}
    assert growth <= bound, f"data dir grew {growth} bytes for {stored} bytes stored: {sizes}"
    # The data survives a graceful restart and nothing is left by stopping either.
    assert srv.stop() == 0
    assert not mount_points_below(srv.data_dir)
    assert not stage_cgroups(base.pid, base.cgroup_roots)


def settle_baseline(srv):
    """A baseline once two reads a second apart agree (the warm-up has quieted down)."""
    deadline = time.monotonic() + SETTLE_S
    base = Baseline(srv)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        again = Baseline(srv)
        if again.fds == base.fds and again.threads == base.threads and not again.work:
            return again
        base = again
    return base


def test_baseline_check_detects_a_leak(leaky):
    """The check above can fail: an fd opened in the server (a long-poll connection held
    open) and a leftover work dir entry are both reported."""
    srv = leaky.start()
    base = settle_baseline(srv)
    import socket as _s

    held = _s.create_connection(("127.0.0.1", srv.port), timeout=5)
    os.makedirs(os.path.join(srv.data_dir, "work", "planted"), exist_ok=True)
    try:
        wait_until(lambda: any(d.startswith("fds") for d in base.differences(srv)), timeout=5,
                   what="a held connection shows as an fd")
        diffs = base.differences(srv)
        assert any(d.startswith("work dir") for d in diffs), diffs
    finally:
        held.close()
        os.rmdir(os.path.join(srv.data_dir, "work", "planted"))


def test_sanitizer_report_in_server_log_fails(tmp_path):
    """The check every WrappedServer makes on stop: a report in its stderr fails."""
    srv = WrappedServer(tmp_path / "data", tmp_path)
    srv._starts = 1
    with open(srv.stderr_path, "w") as f:
        f.write("==1==ERROR: LeakSanitizer: detected memory leaks\n")
    with pytest.raises(AssertionError, match="sanitizer report"):
        srv.assert_no_sanitizer_report()
    with open(srv.stderr_path, "w") as f:
        f.write("info: all fine\n")
    srv.assert_no_sanitizer_report()
