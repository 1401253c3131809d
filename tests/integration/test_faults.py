"""Faults (issue 6): the data dir full or read-only, Nix missing, cgroups unavailable.
Each gives a clear error per submission or at start; the service keeps answering
reads; nothing already stored is lost.

The full and read-only data dirs are a small tmpfs mounted by the test (unmounted in
teardown). "Nix missing" and "cgroups unavailable" run the server in a private mount
namespace (unshare -m, propagation private) where /usr/bin/nix* are covered by
/dev/null, or /sys/fs/cgroup by an empty tmpfs; the host's mounts are untouched.
"""

import json
import os
import subprocess
import time

import pytest

from helpers import submission
from robust_helpers import WrappedServer, mount_points_below, timed_health, token

TMPFS_BYTES = 8 << 20


def mounted_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "cutor-test-disk", path],
                   check=True)


def umount(path):
    subprocess.run(["umount", path], check=False)
    if path in mount_points_below(path):
        subprocess.run(["umount", "-l", path], check=False)


@pytest.fixture
def small_disk(tmp_path_factory):
    """A server whose data dir is on an 8 MiB tmpfs: (server, disk path)."""
    base = tmp_path_factory.mktemp("faults")
    disk = str(base / "disk")
    mounted_tmpfs(disk, TMPFS_BYTES)
    srv = WrappedServer(os.path.join(disk, "data"), base,
                        extra_args=["--workers", "2", "--max-wait-ms", "5000"])
    try:
        yield srv, disk
    finally:
        try:
            srv.stop()
        finally:
            subprocess.run(["mount", "-o", "remount,rw", disk], check=False)
            leaked = [m for m in mount_points_below(srv.data_dir)]
            for m in reversed(leaked):
                subprocess.run(["umount", "-l", m], check=False)
            umount(disk)
            # The server's logs stay in `base` (pytest's tmp dir) for diagnosis.
            assert not leaked, f"mounts left below the data dir: {leaked}"


def fill(disk):
    """Fills the filesystem of `disk` completely; returns the filler's path."""
    filler = os.path.join(disk, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (64 << 10))
                f.flush()
        except OSError:
            pass
    # Small writes may still fit in the last partial blocks: take those too.
    i = 0
    while True:
        try:
            with open(os.path.join(disk, f"filler-{i}"), "wb") as f:
                f.write(b"\0" * 512)
            i += 1
        except OSError:
            break
    return filler


def unfill(disk):
    for e in os.listdir(disk):
        if e.startswith("filler"):
            os.unlink(os.path.join(disk, e))


def make_read_only(disk):
    """Makes `disk` read-only under the running server. A tmpfs with files open for
    writing cannot be remounted ro (EBUSY), so a read-only bind mount of it goes on
    top: every new open, mkdir or create fails with EROFS; writes through fds the
    server already holds (its SQLite files) still succeed, as after a remount they
    would not. That is the part of the fault the test can make here."""
    subprocess.run(["mount", "--bind", disk, disk], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", disk], check=True)


def make_writable(disk):
    # Lazily: a reader may have opened a file through the read-only view meanwhile.
    subprocess.run(["umount", "-l", disk], check=True)  # the top (read-only) bind


def stored_results(c, ids):
    return {sid: json.dumps(c.get_submission(sid), sort_keys=True) for sid in ids}


def check_posts_refused_or_kept(c, n=5):
    """POSTs while the store cannot write: each answered promptly (never a hang) with a
    clear error (5xx with the error shape and a message), or 202 and then kept."""
    accepted = []
    for _ in range(n):
        t0 = time.monotonic()
        r = c.post("/api/v1/submissions", submission({"run.sh": "echo during"}), timeout=15)
        assert time.monotonic() - t0 < 10
        if r.status == 202:
            accepted.append(r.json()["id"])
            continue
        assert r.status in (500, 503, 507), r
        err = r.json()["error"]
        assert err["code"] and err["message"], r
    return accepted


def test_full_data_dir(small_disk):
    srv, disk = small_disk
    srv.start()
    c = srv.client
    before = [c.run(submission({"run.sh": f"echo kept-{i}"}))["id"] for i in range(3)]
    snapshot = stored_results(c, before)
    fill(disk)
    try:
        accepted = check_posts_refused_or_kept(c)
        # Reads keep working while full.
        assert timed_health(c) < 1.0
        assert stored_results(c, before) == snapshot
        assert c.get("/api/v1/submissions?limit=10").status == 200
        assert c.get("/api/v1/info").status == 200
    finally:
        unfill(disk)
    # Space is back: the service recovers without a restart, and what was accepted
    # during the fault finishes.
    done = c.run(submission({"run.sh": "echo recovered"}), timeout=60)
    assert done["run"]["stdout"] == "recovered\n", done
    for sid in accepted:
        assert c.wait_finished(sid)["status"] == "FINISHED"
    assert stored_results(c, before) == snapshot
    # And it all survives a restart.
    assert srv.stop() == 0
    srv.start()
    assert stored_results(srv.client, before) == snapshot


def test_data_dir_full_while_running(small_disk):
    """Submissions that are running or queued when the disk fills end FINISHED (with
    an error if their result cannot be written now, but never lost or stuck)."""
    srv, disk = small_disk
    srv.start()
    c = srv.client
    sids = [c.submit(submission({"run.sh": f"sleep 1; echo late-{i}"}))["id"] for i in range(4)]
    c.poll_until(sids[0], lambda s: s["status"] == "RUNNING", timeout=30)
    fill(disk)
    time.sleep(3)
    assert timed_health(c) < 1.0
    unfill(disk)
    deadline = time.monotonic() + 30
    for i, sid in enumerate(sids):
        s = c.wait_finished(sid, timeout=max(1.0, deadline - time.monotonic()))
        # A full data disk is the host's failure: never the submitter's BUILD_ERROR.
        assert s["result"] in ("OK", "INTERNAL_ERROR"), s
        if s["result"] == "OK":
            assert s["run"]["stdout"] == f"late-{i}\n"


def test_read_only_data_dir(small_disk):
    srv, disk = small_disk
    srv.start()
    c = srv.client
    before = [c.run(submission({"run.sh": f"echo ro-{i}"}))["id"] for i in range(3)]
    snapshot = stored_results(c, before)
    make_read_only(disk)
    try:
        accepted = check_posts_refused_or_kept(c)
        assert timed_health(c) < 1.0
        r = c.get(f"/api/v1/submissions/{before[0]}")
        assert r.status == 200, f"reads must keep working on a read-only data dir: {r}"
        assert stored_results(c, before) == snapshot
    finally:
        make_writable(disk)
    done = c.run(submission({"run.sh": "echo writable"}), timeout=60)
    assert done["run"]["stdout"] == "writable\n"
    for sid in accepted:
        assert c.wait_finished(sid)["status"] == "FINISHED"
    assert stored_results(c, before) == snapshot


def test_start_on_read_only_data_dir_is_a_clear_error(small_disk):
    srv, disk = small_disk
    srv.start()
    srv.client.run(submission({"run.sh": "echo x"}))
    assert srv.stop() == 0
    subprocess.run(["mount", "-o", "remount,ro", disk], check=True)  # no writer now
    srv.start(expect_exit=True)
    if srv.proc.poll() is None:
        # It chose to start read-only: then reads must work and writes be refused.
        c = srv.client
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if c.get("/api/v1/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        assert c.get("/api/v1/submissions").status == 200
        check_posts_refused_or_kept(c, n=2)
        return
    code = srv.proc.returncode
    srv.proc = None
    err = srv.stderr_text()
    assert code != 0, err
    assert srv.data_dir in err or "read-only" in err.lower(), f"unclear start error:\n{err}"


def test_start_on_full_data_dir_is_a_clear_error_or_works(small_disk):
    srv, disk = small_disk
    os.makedirs(srv.data_dir, exist_ok=True)
    fill(disk)
    try:
        srv.start(expect_exit=True)
        if srv.proc.poll() is not None:
            code = srv.proc.returncode
            srv.proc = None
            err = srv.stderr_text()
            assert code != 0
            assert "space" in err.lower() or "full" in err.lower() or srv.data_dir in err, err
            return
        # Started: writes fail cleanly, health answers.
        c = srv.client
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if c.get("/api/v1/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        check_posts_refused_or_kept(c, n=2)
    finally:
        unfill(disk)


NIX_BINARIES = ["nix", "nix-store", "nix-build", "nix-instantiate", "nix-shell", "nix-env",
                "nix-daemon", "nix-channel", "nix-collect-garbage", "nix-copy-closure", "nix-hash",
                "nix-prefetch-url"]


def private_namespace_prefix(setup):
    """Runs `setup` (shell) in a private mount namespace, then execs the server there."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
            setup + '\nexec "$@"', "cutor-test-ns"]


@pytest.fixture
def ns_server(tmp_path_factory):
    started = []

    def make(setup, extra_args=("--workers", "2")):
        base = tmp_path_factory.mktemp("faults-ns")
        srv = WrappedServer(base / "data", base, extra_args=list(extra_args),
                            prefix=private_namespace_prefix(setup))
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.cleanup()


def test_nix_missing(ns_server):
    covers = "\n".join(f"[ -e /usr/bin/{b} ] && mount --bind /dev/null /usr/bin/{b} || true"
                       for b in NIX_BINARIES)
    srv = ns_server(covers)
    srv.start()
    c = srv.client
    info = c.info()
    assert info["nix"]["available"] is False, info
    # Without cutor.nix: works as usual.
    ok = c.run(submission({"run.sh": "echo plain"}))
    assert ok["result"] == "OK" and ok["run"]["stdout"] == "plain\n", ok
    # With cutor.nix: a clear per-submission error, not a hang.
    s = c.run(submission({"cutor.nix": "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell {}",
                          "run.sh": "echo never"}), timeout=60)
    # The server's own failure, not the submitter's cutor.nix: INTERNAL_ERROR with the why.
    assert s["result"] == "INTERNAL_ERROR", s
    env = s["environment"]
    assert env["status"] == "INTERNAL_ERROR", env
    for text in (env["stderr"], env["output"]):
        assert "no Nix environment cache: Nix cannot start" in text, env
    assert info["nix"]["problem"].startswith("Nix cannot start"), info
    assert s["run"]["status"] == "SKIPPED"
    # Dependency endpoints say so too.
    r = c.get("/api/v1/dependencies")
    assert r.status in (200, 503), r
    assert timed_health(c) < 1.0


def test_cgroups_unavailable(ns_server):
    srv = ns_server("mount -t tmpfs -o size=1m cutor-test-nocgroup /sys/fs/cgroup")
    srv.start(expect_exit=True)
    if srv.proc.poll() is not None:
        # Refused at start: a clear message.
        code = srv.proc.returncode
        srv.proc = None
        err = srv.stderr_text()
        assert code != 0 and "cgroup" in err.lower(), err
        return
    deadline = time.monotonic() + 10
    c = srv.client
    while time.monotonic() < deadline:
        try:
            if c.get("/api/v1/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.1)
    info = c.info()
    assert "none" in json.dumps(info["sandbox"]["cgroups"]).lower() or "no" in json.dumps(
        info["sandbox"]["cgroups"]).lower(), info["sandbox"]
    tok = token()
    s = c.run(submission({"run.sh": f"echo {tok}"}), timeout=60)
    # Either it runs with a documented fallback, or it says why it cannot.
    if s["result"] != "OK":
        assert s["result"] == "INTERNAL_ERROR", s
        stage = s["run"] if s["run"]["status"] != "SKIPPED" else s["build"]
        assert "cgroup" in (stage["stderr"] + stage["output"]).lower(), s
    else:
        assert s["run"]["stdout"] == f"{tok}\n"
    assert c.get(f"/api/v1/submissions/{s['id']}").status == 200
    assert timed_health(c) < 1.0
