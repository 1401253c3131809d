"""Crash and restart (issue 6, SPEC §1 recovery and §6 "nothing accepted is lost").

- Under a stream of submissions, kill -9 the server at random moments several times,
  restart it on the same data dir, and check that every submission answered 202 ends
  FINISHED exactly once with its own result, and that a result, once FINISHED, never
  changes afterwards (a re-run would change finished_at and the stage times).
- After kill -9 no sandboxed process of the dead server is left running.
- SIGTERM is graceful: the server stops accepting, finishes or leaves for re-queue what
  is running, exits 0 within a bound, and nothing accepted is lost.

CI: ~300 submissions and 3 kills; CUTOR_LONG=1: 500 submissions and 8 kills.
"""

import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from helpers import processes_with_marker, submission, wait_until
from robust_helpers import LONG, WrappedServer, mount_points_below, token

TOTAL = 500 if LONG else 300
KILLS = 8 if LONG else 3
GRACEFUL_EXIT_BOUND_S = 25.0  # executor grace (10 s) + stopping + margin


@pytest.fixture
def crash_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    srv = WrappedServer(base / "data", base, extra_args=["--workers", "4"])
    yield srv
    try:
        srv.stop()
    finally:
        # Workspace mounts a killed server left behind are removed here so the host is
        # clean whatever the outcome; the tests themselves fail on them.
        for mp in reversed(mount_points_below(srv.data_dir)):
            subprocess.run(["umount", "-l", mp], check=False)
        srv.cleanup()


def job(tok, slow=False):
    """A submission whose output is unique to it: its token from stdin, arg and env."""
    script = 'read line; echo "$line $1 $TOK"'
    if slow:
        script = "sleep 0.3; " + script
    return submission(
        {"run.sh": script},
        stdin=tok + "\n",
        args=[tok[::-1]],
        env={"TOK": tok.upper()},
    )


def expected_stdout(tok):
    return f"{tok} {tok[::-1]} {tok.upper()}\n"


class Submitter(threading.Thread):
    """Posts submissions one after another against whatever server is current; records
    those answered 202. Connection errors (server down) are expected and retried."""

    def __init__(self, server, total):
        super().__init__(daemon=True)
        self.server = server
        self.total = total
        self.accepted = {}  # id -> token
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.refused = []

    def run(self):
        n = 0
        while n < self.total and not self.stop.is_set():
            client = self.server.client
            tok = token()
            try:
                r = client.post("/api/v1/submissions", job(tok, slow=n % 3 == 0), timeout=10)
            except OSError:
                time.sleep(0.05)
                continue
            if r.status == 202:
                with self.lock:
                    self.accepted[r.json()["id"]] = tok
                n += 1
            else:
                self.refused.append(r)
                time.sleep(0.05)


def snapshot_finished(client):
    """id -> the fields of a FINISHED submission that must never change."""
    out = {}
    cursor = None
    while True:
        q = "?status=FINISHED&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        r = client.get("/api/v1/submissions" + q, timeout=30)
        assert r.status == 200, r
        page = r.json()
        for s in page["submissions"]:
            out[s["id"]] = json.dumps(
                {k: s[k] for k in ("result", "created_at", "finished_at", "environment",
                                   "build", "compile", "run")},
                sort_keys=True,
            )
        cursor = page["next_cursor"]
        if not cursor:
            return out


def all_ids(client):
    ids = []
    cursor = None
    while True:
        q = "?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = client.get("/api/v1/submissions" + q, timeout=30).json()
        ids += [s["id"] for s in page["submissions"]]
        cursor = page["next_cursor"]
        if not cursor:
            return ids


def check_unchanged(before, after, when):
    for sid, fields in before.items():
        assert sid in after, f"{when}: FINISHED submission {sid} disappeared"
        assert after[sid] == fields, (
            f"{when}: FINISHED submission {sid} changed:\n before {fields}\n after  {after[sid]}"
        )


def test_kill9_under_load_loses_nothing_and_runs_each_once(crash_server):
    srv = crash_server
    srv.start()
    submitter = Submitter(srv, TOTAL)
    submitter.start()
    finished = {}
    rng = random.Random(os.getpid())
    try:
        for k in range(KILLS):
            time.sleep(rng.uniform(1.0, 4.0))
            pid = srv.proc.pid
            srv.kill9()
            # The dead server's sandboxes die with it (PR_SET_PDEATHSIG on the box init).
            wait_until(
                lambda: not processes_with_marker(f"stage-{pid}-")
                and not [p for p in processes_with_marker("cutor") if _parent_is(p, pid)],
                timeout=10,
                what=f"no process of the killed server {pid} left",
            )
            srv.start()
            now = snapshot_finished(srv.client)
            check_unchanged(finished, now, f"after kill {k + 1}")
            finished = now
        submitter.join(timeout=300)
        assert not submitter.is_alive(), "the submitter did not get its submissions in"
    finally:
        submitter.stop.set()
    c = srv.client
    accepted = dict(submitter.accepted)
    assert len(accepted) == TOTAL
    deadline = time.monotonic() + 300
    for sid, tok in accepted.items():
        s = c.wait_finished(sid, timeout=max(1.0, deadline - time.monotonic()))
        assert s["result"] == "OK", f"{sid}: {s['result']}: run stage {json.dumps(s['run'])}"
        assert s["run"]["stdout"] == expected_stdout(tok), (sid, s["run"])
        assert s["run"]["code"] == 0
    ids = all_ids(c)
    assert len(ids) == len(set(ids)), "a submission is listed twice"
    missing = set(accepted) - set(ids)
    assert not missing, f"accepted but not stored: {sorted(missing)[:5]}"
    # Stored but never answered (in flight at a kill) is allowed; they finish too.
    final = snapshot_finished(c)
    assert set(ids) == set(final), "every stored submission ends FINISHED"
    check_unchanged(finished, final, "at the end")
    # One more restart, a graceful one this time: nothing changes.
    assert srv.stop() == 0
    srv.start()
    check_unchanged(final, snapshot_finished(srv.client), "after a graceful restart")
    # The restarted server swept what the kills left in its work dir.
    work = os.path.join(srv.data_dir, "work")
    wait_until(lambda: not mount_points_below(work) and not os.listdir(work), timeout=10,
               what=f"no workspace dir or mount left in {work}")


def _parent_is(pid, parent):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return int(stat[stat.rfind(")") + 2:].split()[1]) == parent
    except OSError:
        return False


def test_kill9_while_stages_run_then_restart_reruns_them(crash_server):
    """Every worker inside a running stage at the kill: each is re-run from the start
    after the restart and ends with its own output, its status back to QUEUED at most once."""
    srv = crash_server
    srv.start()
    c = srv.client
    toks = [token() for _ in range(4)]
    sids = []
    for tok in toks:
        body = job(tok)
        body["files"][0]["content"] = "sleep 2; " + body["files"][0]["content"]
        sids.append(c.submit(body)["id"])
    for sid in sids:
        c.poll_until(sid, lambda s: s["status"] == "RUNNING", timeout=30)
    pid = srv.proc.pid
    srv.kill9()
    wait_until(lambda: not processes_with_marker(f"stage-{pid}-"), timeout=10,
               what="sandboxes of the killed server gone")
    srv.start()
    for sid, tok in zip(sids, toks):
        s = srv.client.wait_finished(sid)
        assert s["result"] == "OK", s
        assert s["run"]["stdout"] == expected_stdout(tok), s["run"]


def test_restart_sweeps_workspaces_a_killed_server_left(crash_server):
    """Reproduces deterministically what test_kill9_under_load... left behind in runs:
    a workspace of an already FINISHED submission, still mounted. The restarted server
    owns <data>/work and must clear it."""
    srv = crash_server
    srv.start()
    c = srv.client
    sid = c.run(submission({"run.sh": "echo done"}))["id"]
    srv.kill9()
    stale = os.path.join(srv.data_dir, "work", sid)
    os.makedirs(stale, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "cutor-test-stale", stale], check=True)
    with open(os.path.join(stale, "left.txt"), "w") as f:
        f.write("left by the killed server")
    srv.start()
    assert srv.client.run(submission({"run.sh": "echo after"}))["run"]["stdout"] == "after\n"
    work = os.path.join(srv.data_dir, "work")
    wait_until(lambda: not mount_points_below(work) and not os.listdir(work), timeout=10,
               what=f"stale workspace swept from {work}")


def test_sigterm_is_graceful_and_bounded(crash_server):
    srv = crash_server
    srv.start()
    c = srv.client
    # Two quick ones running (finish within the grace), two that outlive the grace
    # (left unfinished and re-run after restart), and queued ones.
    short = [token() for _ in range(2)]
    long_ = [token() for _ in range(2)]
    queued = [token() for _ in range(6)]
    ids = {}
    for tok in short:
        body = job(tok)
        body["files"][0]["content"] = "sleep 1; " + body["files"][0]["content"]
        ids[c.submit(body)["id"]] = tok
    for tok in long_:
        body = job(tok)
        body["files"][0]["content"] = "sleep 14; " + body["files"][0]["content"]
        body["limits"] = {"run": {"wall_time_ms": 60000}}
        ids[c.submit(body)["id"]] = tok
    for sid in list(ids)[:4]:
        c.poll_until(sid, lambda s: s["status"] == "RUNNING", timeout=30)
    for tok in queued:
        ids[c.submit(job(tok))["id"]] = tok

    # Keep posting during the stop: whatever is answered 202 must not be lost.
    stop_posting = threading.Event()
    late = {}

    def post_during_stop():
        while not stop_posting.is_set():
            tok = token()
            try:
                r = c.post("/api/v1/submissions", job(tok), timeout=5)
            except OSError:
                time.sleep(0.02)
                continue
            if r.status == 202:
                late[r.json()["id"]] = tok
            time.sleep(0.01)

    poster = threading.Thread(target=post_during_stop, daemon=True)
    poster.start()
    time.sleep(0.3)
    p = srv.proc
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    # It stops accepting promptly: new connections are refused (or reset) soon.
    def refusing():
        try:
            r = c.get("/api/v1/health", timeout=1)
            return False if r.status == 200 else True
        except OSError:
            return True

    wait_until(refusing, timeout=5, what="the server stops accepting after SIGTERM")
    try:
        p.wait(timeout=GRACEFUL_EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"SIGTERM: still running after {GRACEFUL_EXIT_BOUND_S}s")
    took = time.monotonic() - t0
    stop_posting.set()
    poster.join(10)
    srv.proc = None
    assert p.returncode == 0, f"exit status {p.returncode}; stderr:\n{srv.stderr_text()}"
    assert not processes_with_marker(f"stage-{p.pid}-"), "sandboxes outlived the server"

    srv.start()
    c = srv.client
    short_ids = list(ids)[:2]
    for sid in short_ids:
        s = c.get_submission(sid)
        assert s["status"] == "FINISHED" and s["result"] == "OK", (
            f"a 1 s job running at SIGTERM should finish within the grace period: {s}"
        )
    for sid, tok in list(ids.items()) + list(late.items()):
        s = c.wait_finished(sid, timeout=90)
        assert s["result"] == "OK", s
        assert s["run"]["stdout"] == expected_stdout(tok), s["run"]
    assert took < GRACEFUL_EXIT_BOUND_S
