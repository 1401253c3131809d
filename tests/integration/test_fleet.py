"""A fleet on one machine: one `cutor serve --workers 0` (the API) and several
`cutor worker` processes sharing a real PostgreSQL. Every submission finishes exactly
once; a worker killed -9 mid-run loses its lease and another worker finishes its
submission; cancel crosses processes."""

import os
import re
import signal
import subprocess
import time

import pytest

from helpers import Server, require_binary, submission, wait_until
from pg_cluster import PgCluster

LEASE_S = 2


@pytest.fixture(scope="module")
def pg():
    cluster = PgCluster().start()
    yield cluster
    cluster.stop()


class Worker:
    def __init__(self, url, base, name, workers=2):
        self.log = os.path.join(base, f"{name}.log")
        self.data = os.path.join(base, f"{name}-data")
        args = [require_binary(), "worker", "--store", url, "--workers", str(workers),
                "--data", self.data, "--lease-timeout", str(LEASE_S), "--substituters", "",
                "--log-level", "debug", "--prepared-boxes", "0"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"worker ignored SIGTERM:\n{self.text()[-4000:]}")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def fleet(pg, tmp_path):
    url = pg.new_database()
    api = Server(tmp_path / "api", tmp_path,
                 extra_args=["--store", url, "--workers", "0", "--lease-timeout", str(LEASE_S)])
    api.start()
    workers = []

    def add_worker(name):
        w = Worker(url, str(tmp_path), name)
        workers.append(w)
        return w

    yield api, add_worker
    try:
        for w in workers:
            w.stop()
    finally:
        api.cleanup()


def mounts_below(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path + "/")]


def finished_lines(workers, sid):
    return sum(len(re.findall(rf"submission {sid} FINISHED", w.text())) for w in workers)


def test_submissions_run_once_each_across_workers(fleet):
    api, add_worker = fleet
    workers = [add_worker(f"w{i}") for i in range(3)]
    n = 30
    ids = {}
    for i in range(n):
        r = api.client.submit(submission({"run.sh": f"echo job-{i}\n"}))
        ids[r["id"]] = i
    for sid, i in ids.items():
        sub = api.client.wait_finished(sid, timeout=120)
        assert sub["result"] == "OK", sub
        assert sub["run"]["stdout"] == f"job-{i}\n"
    # Exactly once: one FINISHED line per submission in all the workers' logs together.
    for sid in ids:
        assert finished_lines(workers, sid) == 1, sid
    # The API server ran nothing itself; the work was shared out.
    assert sum(1 for w in workers if "FINISHED OK" in w.text()) >= 2
    info = api.client.get("/api/v1/info").json()
    assert info["workers"] == 0


def test_a_killed_workers_submission_is_requeued_and_finished_by_another(fleet):
    api, add_worker = fleet
    first = add_worker("first")
    sid = api.client.submit(submission({"run.sh": "sleep 3; echo survived\n"}))["id"]
    api.client.poll_until(sid, lambda s: s["status"] == "RUNNING", timeout=60)
    wait_until(lambda: f"submission {sid} RUNNING" in first.text(), 10, what="first runs it")
    second = add_worker("second")
    first.kill9()
    killed_at = time.monotonic()
    sub = api.client.wait_finished(sid, timeout=120)
    assert sub["result"] == "OK", sub
    assert sub["run"]["stdout"] == "survived\n"
    # Not before the lease expired: the run restarted from the beginning on `second`.
    assert time.monotonic() - killed_at >= LEASE_S
    assert finished_lines([second], sid) == 1
    assert finished_lines([first], sid) == 0
    # The result does not change afterwards.
    time.sleep(0.5)
    assert api.client.get_submission(sid)["run"]["stdout"] == "survived\n"
    # The killed worker's workspace (a tmpfs) is removed when a worker starts on its --data.
    assert mounts_below(first.data), "the killed worker left no workspace: test is void"
    add_worker("first")
    wait_until(lambda: not mounts_below(first.data), 30, what="the stale workspace removed")


def test_cancel_through_the_api_kills_the_run_on_a_worker(fleet):
    api, add_worker = fleet
    w = add_worker("w")
    sid = api.client.submit(submission({"run.sh": "sleep 60\n"}))["id"]
    api.client.poll_until(sid, lambda s: s["status"] == "RUNNING", timeout=60)
    start = time.monotonic()
    r = api.client.delete(f"/api/v1/submissions/{sid}")
    assert r.status == 200, r
    sub = api.client.wait_finished(sid, timeout=30)
    assert sub["result"] == "CANCELLED"
    # The worker's sandbox was killed: it takes new work well before the 60 s sleep ends.
    sid2 = api.client.submit(submission({"run.sh": "echo next\n"}))["id"]
    sub2 = api.client.wait_finished(sid2, timeout=30)
    assert sub2["result"] == "OK"
    assert time.monotonic() - start < 30


def test_worker_refuses_a_store_that_is_not_postgresql(tmp_path):
    r = subprocess.run([require_binary(), "worker", "--store", str(tmp_path / "x.db")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "--store must be a postgresql://" in r.stderr
