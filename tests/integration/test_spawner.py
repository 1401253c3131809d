"""The box spawner (issue 12): killed under load it is restarted, no submission is lost or
fails, and health and /metrics say so. The server never forks its multi-threaded self for a
box; that a spawner which cannot be restarted fails stages closed is shown in
tests/unit/sandbox_pool_test.cpp (SpawnerThatCannotBeRestartedFailsStagesClosed)."""

import os
import signal
import threading
import time

from helpers import scaled, submission, wait_until


def children_of(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        own = [int(p) for p in f.read().split()]
    # Children of the server's other threads (the spawner keeper's) are listed per task.
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                own += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return sorted(set(own))


def state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def in_host_pid_namespace(pid):
    # A box init is born a clone of the spawner (same name) in a pid namespace of its own.
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return len(line.split()) == 2
    except OSError:
        pass
    return False


def spawner_of(server_pid, killed=()):
    """The server's live spawner (not one killed and not reaped yet), or None."""
    found = [
        p
        for p in children_of(server_pid)
        if p not in killed
        and comm(p) == "cutor-spawner"
        and state(p) not in ("Z", "gone")
        and in_host_pid_namespace(p)
    ]
    return found[0] if len(found) == 1 else None


def restarts_metric(client):
    text = client.get("/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith("cutor_box_spawner_restarts_total "):
            return int(line.split()[1])
    raise AssertionError("no cutor_box_spawner_restarts_total in /metrics")


def test_a_killed_spawner_is_restarted_under_load_and_nothing_fails(make_server):
    srv = make_server(["--workers", "2"])
    client = srv.client
    health = client.get("/api/v1/health")
    assert health.status == 200
    assert health.json()["sandbox"] == {"ok": True, "spawner_restarts": 0}
    assert restarts_metric(client) == 0

    ids = []
    submit_errors = []

    def submit_all():
        try:
            for i in range(40):
                body = submission({"run.sh": f"echo n{i}\n"})
                ids.append((i, client.submit(body)["id"]))
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            submit_errors.append(repr(e))

    submitter = threading.Thread(target=submit_all)
    submitter.start()
    killed = []
    probes = 0
    for _ in range(2):
        wait_until(lambda: len(ids) >= 10 * (len(killed) + 1), scaled(30), what="submissions")
        # A spawner is restarted when a box is next wanted: once the load is over, a probe
        # submission wants one.
        deadline = time.monotonic() + scaled(30)
        while spawner_of(srv.proc.pid, killed) is None:
            assert time.monotonic() < deadline, "no spawner to kill"
            if not submitter.is_alive():
                probe = client.run(submission({"run.sh": "echo probe\n"}))
                assert probe["result"] == "OK" and probe["run"]["stdout"] == "probe\n", probe
                probes += 1
            time.sleep(0.01)
        victim = spawner_of(srv.proc.pid, killed)
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
    submitter.join()
    assert submit_errors == []
    for i, sid in ids:
        done = client.wait_finished(sid)
        assert done["result"] == "OK", (i, done)
        assert done["run"]["stdout"] == f"n{i}\n"
    # The run after the second kill restarts the spawner (or a pool refill already did).
    after = client.run(submission({"run.sh": "echo after\n"}))
    assert after["result"] == "OK" and after["run"]["stdout"] == "after\n", after
    wait_until(lambda: spawner_of(srv.proc.pid, killed) is not None, scaled(10),
               what="a restarted spawner")
    health = client.get("/api/v1/health")
    assert health.status == 200
    assert health.json() == {"status": "ok", "sandbox": {"ok": True, "spawner_restarts": 2}}
    assert restarts_metric(client) == 2
    # The restarted spawner hides the server's command line, as the first one does.
    with open(f"/proc/{spawner_of(srv.proc.pid, killed)}/cmdline", "rb") as f:
        assert f.read().rstrip(b"\0") == b"cutor-spawner"
    srv.stop()
    for pid in killed:
        assert not os.path.exists(f"/proc/{pid}") or comm(pid) != "cutor-spawner"
