"""Issue 11: a fresh machine runs cutor.nix, and what a client sees is what happened.

- The setup's Nix step (scripts/setup-nix.sh) on an /etc without the `nixbld` group: in a
  private mount namespace a copy of the host's /etc, stripped of the build users and of
  nix.conf, is bound over /etc. Before the step, `cutor run` and `cutor doctor` say what is
  missing and Nix builds nothing; after it, a cutor.nix submission succeeds (`cutor run`
  and `cutor serve` over HTTP). A second run of the step changes nothing; a nix.conf it
  did not write is left byte for byte.
- A FINISHED submission holds nothing of its environment: 100 times, POST ?wait=true
  with a cutor.nix, then DELETE of its dependency answers 204.
- The host's failures are INTERNAL_ERROR with the why: every box uid taken.
- One server per data directory.
"""

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from helpers import Server, require_binary, scaled, submission, wait_until
from robust_helpers import WrappedServer

SOURCE_DIR = os.environ.get(
    "CUTOR_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
NIXPKGS = os.path.join(SOURCE_DIR, "tests", "nixpkgs")
SETUP_NIX = os.path.join(SOURCE_DIR, "scripts", "setup-nix.sh")
NIX_ARGS = ["--nix-path", f"nixpkgs={NIXPKGS}", "--substituters", ""]
PYTHON_NIX = "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ pkgs.python3 ]; }"
TIMEOUT_S = scaled(180)
OUR_NIX_CONF = (
    "# Written by cutor's scripts/setup-nix.sh; delete it to have it written again.\n"
    "build-users-group = nixbld\n"
    "sandbox = true\n"
)
MISSING_GROUP = "the group 'nixbld' named by build-users-group does not exist"
ACCOUNT_FILES = ["passwd", "shadow", "group", "gshadow"]


def is_build_user_line(line):
    name = line.split(":", 1)[0]
    return name == "nixbld" or (name.startswith("nixbld") and name[6:].isdigit())


@pytest.fixture
def bare_etc(tmp_path):
    """A copy of the host's /etc without the nixbld group, its users and nix.conf."""
    etc = tmp_path / "etc"
    # Not the canaries other tests plant in /etc to prove nothing reads them.
    shutil.copytree("/etc", etc, symlinks=True, ignore=shutil.ignore_patterns("cutor-canary-*"))
    for name in ACCOUNT_FILES:
        path = etc / name
        if path.exists():
            lines = path.read_text().splitlines(keepends=True)
            path.write_text("".join(l for l in lines if not is_build_user_line(l)))
    shutil.rmtree(etc / "nix", ignore_errors=True)
    return etc


def in_etc(etc, argv, **kw):
    """Runs `argv` in a private mount namespace whose /etc is `etc`."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
         'mount --bind "$0" /etc; exec "$@"', str(etc)] + list(argv),
        capture_output=True, timeout=TIMEOUT_S, text=True, **kw)


def digest(etc):
    h = hashlib.sha256()
    for name in ACCOUNT_FILES + ["nix/nix.conf"]:
        path = etc / name
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"-"))
    return h.hexdigest()


def nix_dir(tmp_path):
    d = tmp_path / "program"
    d.mkdir(exist_ok=True)
    (d / "cutor.nix").write_text(PYTHON_NIX)
    (d / "run.sh").write_text("python3 -c 'print(6 * 7)'\n")
    return d


def cutor_run(etc, tmp_path):
    proc = in_etc(etc, [require_binary(), "run", str(nix_dir(tmp_path)), "--data",
                        str(tmp_path / "cache")] + NIX_ARGS)
    try:
        return proc, json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"cutor run printed no JSON (exit {proc.returncode}): {proc.stderr}")


def test_setup_nix_makes_a_host_without_build_users_build_cutor_nix(bare_etc, tmp_path):
    assert in_etc(bare_etc, ["getent", "group", "nixbld"]).returncode == 2, "not stripped"

    # Before the step: refused with the problem and the fix, Nix never asked to build.
    proc, sub = cutor_run(bare_etc, tmp_path)
    assert proc.returncode == 125, (proc.returncode, proc.stderr)
    assert sub["result"] == "INTERNAL_ERROR", sub
    env = sub["environment"]
    assert env["status"] == "INTERNAL_ERROR", env
    for text in (env["stderr"], env["output"], proc.stderr):
        assert MISSING_GROUP in text and "scripts/setup-nix.sh" in text, text
    doctor = in_etc(bare_etc, [require_binary(), "doctor"])
    assert f"missing nix: Nix cannot build: {MISSING_GROUP}" in doctor.stdout, doctor.stdout

    # The setup's step, as scripts/setup.sh runs it.
    step = in_etc(bare_etc, [SETUP_NIX])
    assert step.returncode == 0, step.stderr
    members = (bare_etc / "group").read_text()
    group_line = [l for l in members.splitlines() if l.startswith("nixbld:")]
    assert len(group_line) == 1, members
    assert group_line[0].split(":")[3].split(",") == [f"nixbld{i}" for i in range(1, 11)]
    users = [l for l in (bare_etc / "passwd").read_text().splitlines() if is_build_user_line(l)]
    assert len(users) == 10, users
    assert all(l.endswith(":/var/empty:/usr/sbin/nologin") for l in users), users
    assert (bare_etc / "nix" / "nix.conf").read_text() == OUR_NIX_CONF
    # Idempotent: a second run changes no byte and says nothing.
    before = digest(bare_etc)
    again = in_etc(bare_etc, [SETUP_NIX])
    assert again.returncode == 0 and again.stdout == "", again
    assert digest(bare_etc) == before
    doctor = in_etc(bare_etc, [require_binary(), "doctor", "--substituters", ""])
    assert ("ok      nix: can build: build users of group 'nixbld', sandbox true, "
            "substituters none (offline)") in doctor.stdout, doctor.stdout

    # After it: a cutor.nix submission succeeds, through `cutor run`...
    proc, sub = cutor_run(bare_etc, tmp_path)
    assert sub["result"] == "OK", sub
    assert sub["run"]["stdout"] == "42\n" and proc.returncode == 0, sub

    # ...and through `cutor serve` over HTTP.
    srv = WrappedServer(tmp_path / "data", tmp_path, extra_args=["--workers", "2"] + NIX_ARGS,
                        prefix=["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                                f'mount --bind "{bare_etc}" /etc; exec "$@"', "cutor-ns"])
    try:
        srv.start()
        info = srv.client.info()["nix"]
        assert info == {"available": True, "substituters": [], "build_users_group": "nixbld",
                        "sandbox": "true", "max_builds": 10}, info
        nix = "# served\n" + PYTHON_NIX
        s = srv.client.run(submission({"cutor.nix": nix, "run.sh": "python3 -c 'print(1+1)'"}),
                           timeout=TIMEOUT_S)
        assert s["result"] == "OK" and s["run"]["stdout"] == "2\n", s
    finally:
        srv.cleanup()


def test_setup_nix_leaves_a_nix_conf_it_did_not_write(bare_etc):
    (bare_etc / "nix").mkdir()
    theirs = "# mine\nbuild-users-group = nixbld\nsandbox = relaxed\nmax-jobs = 3\n"
    (bare_etc / "nix" / "nix.conf").write_text(theirs)
    step = in_etc(bare_etc, [SETUP_NIX])
    assert step.returncode == 0, step.stderr
    assert "/etc/nix/nix.conf is not ours; left as it is" in step.stdout, step.stdout
    assert (bare_etc / "nix" / "nix.conf").read_text() == theirs
    assert "nixbld:" in (bare_etc / "group").read_text()


def test_setup_sh_runs_the_nix_step_before_building():
    lines = [l.strip() for l in open(os.path.join(SOURCE_DIR, "scripts", "setup.sh"))]
    code = [l for l in lines if l and not l.startswith("#")]
    assert "scripts/setup-nix.sh" in code, "setup.sh no longer runs the Nix step"
    build = next(i for i, l in enumerate(code) if l.startswith("cmake --build"))
    assert code.index("scripts/setup-nix.sh") < build


def test_a_finished_submission_never_holds_its_environment(make_server):
    """The issue's report: POST ?wait=true, FINISHED, then DELETE answered 409 in_use."""
    srv = make_server(["--workers", "2"] + NIX_ARGS)
    c = srv.client
    for i in range(100):
        s = c.run(submission({"cutor.nix": PYTHON_NIX, "run.sh": f"python3 -c 'print({i})'"}),
                  timeout=TIMEOUT_S)
        assert s["status"] == "FINISHED" and s["result"] == "OK", s
        assert s["run"]["stdout"] == f"{i}\n", s
        deps = c.get("/api/v1/dependencies").json()["dependencies"]
        assert len(deps) == 1, deps
        r = c.delete(f"/api/v1/dependencies/{deps[0]['key']}", timeout=TIMEOUT_S)
        assert r.status == 202 and r.json()["state"] == "evicting", (i, r.status, r.body)
        wait_until(lambda: not c.get("/api/v1/dependencies").json()["dependencies"],
                   TIMEOUT_S, what="evicted")


def test_every_box_uid_taken_is_internal_error_with_the_reason(tmp_path):
    passwd = tmp_path / "passwd"
    text = open("/etc/passwd").read()
    text += "".join(f"cutor-taken-{u}:x:{u}:{u}::/:/usr/sbin/nologin\n"
                    for u in range(60000, 61000))
    passwd.write_text(text)
    srv = WrappedServer(tmp_path / "data", tmp_path, extra_args=["--workers", "1"],
                        prefix=["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                                f'mount --bind "{passwd}" /etc/passwd; exec "$@"', "cutor-ns"])
    try:
        srv.start()
        s = srv.client.run(submission({"run.sh": "echo never"}), timeout=TIMEOUT_S)
        assert s["result"] == "INTERNAL_ERROR", s
        build = s["build"]
        assert build["status"] == "INTERNAL_ERROR" and build["code"] is None, build
        why = "all box uids 60000..60999 are in use on this host"
        assert why in build["stderr"] and why in build["output"], build
        assert s["run"]["status"] == "SKIPPED", s
        wait_until(lambda: why in srv.log_text(), scaled(10), what="the reason in the log")
    finally:
        srv.cleanup()


def test_one_server_per_data_directory(make_server, tmp_path):
    first = make_server(["--workers", "1"])
    c = first.client
    sid = c.submit(submission({"run.sh": "sleep 2; echo survived"}))["id"]
    c.poll_until(sid, lambda s: s["status"] == "RUNNING", timeout=TIMEOUT_S)

    second = WrappedServer(first.data_dir, tmp_path, extra_args=["--workers", "1"])
    second.start(expect_exit=True)
    code = second.proc.wait(timeout=TIMEOUT_S)
    second.proc = None
    err = second.log_text()
    assert code == 1, err
    assert (f"serve: the data directory {first.data_dir} is in use by another cutor process "
            f"(pid {first.proc.pid})") in err, err

    deps = [require_binary(), "deps", "--data", first.data_dir] + NIX_ARGS
    gc = subprocess.run(deps + ["gc"], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert gc.returncode == 1 and "deps gc: the data directory" in gc.stderr, gc
    listing = subprocess.run(deps + ["list"], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert listing.returncode == 0 and json.loads(listing.stdout) == {"dependencies": []}, listing

    # The first server's running submission was neither re-queued nor lost its workspace.
    s = c.wait_finished(sid, timeout=TIMEOUT_S)
    assert s["result"] == "OK" and s["run"]["stdout"] == "survived\n", s

    # Once it is stopped, the directory is free again.
    first.stop()
    third = Server(first.data_dir, tmp_path, extra_args=["--workers", "1"])
    try:
        third.start()
        assert third.client.get(f"/api/v1/submissions/{sid}").json()["result"] == "OK"
    finally:
        third.stop()
