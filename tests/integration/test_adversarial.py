"""The adversarial suite: hostile programs (tests/adversarial/) against the real service.

Each test sends one hostile program (C compiled in the box by compile.sh with the host's
gcc, shell, or Python), asserts the exact verdict and what the program printed, and, through
the autouse `host_guard`, that the host is unchanged afterwards:
- canary files planted on the host (/root, /etc, a tmp dir, a tmp directory) unread (atime)
  and unmodified (content, listing, mode, owner, mtime);
- no process of a box uid (60000-60999) left from this module's server or escaped from
  every server;
- no new mount on the host, no workspace left in the server's data dir;
- no file owned by a box uid in the host's shared directories.

Network probes go only to loopback: the test listens on 127.0.0.1/::1 and the box, whose
loopback is its own, must not reach it. Nothing is sent anywhere else.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers import (Server, cutor_bin, processes_with_marker, sanitizer_report, scaled,
                     submission, wait_until)

PROGRAMS = os.path.join(
    os.environ.get("CUTOR_SOURCE_DIR")
    or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "tests",
    "adversarial",
)
BOX_UIDS = range(60000, 61000)
SERVER_SECRET_ENV = "CUTOR_ADV_SERVER_SECRET"
SERVER_SECRET = "server-env-" + secrets.token_hex(8)
SHARED_DIRS = ["/tmp", "/root", "/etc", "/var/tmp", "/dev/shm", "/run"]


def program(name):
    with open(os.path.join(PROGRAMS, name)) as f:
        return f.read()


# --- host state --------------------------------------------------------------------


def _proc_status(pid):
    """(uid, ppid, name) of a host process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    uid = int(re.search(r"^Uid:\s+(\d+)", text, re.M).group(1))
    ppid = int(re.search(r"^PPid:\s+(\d+)", text, re.M).group(1))
    name = re.search(r"^Name:\s+(.*)$", text, re.M).group(1)
    return uid, ppid, name


def box_processes():
    """{pid: ancestors' names and pids} for every host process running as a box uid."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _proc_status(entry)
        if st is None or st[0] not in BOX_UIDS:
            continue
        chain, pid = [], st[1]
        while pid > 1 and len(chain) < 64:
            up = _proc_status(pid)
            if up is None:
                break
            chain.append((pid, up[2]))
            pid = up[1]
        found[int(entry)] = chain
    return found


def leaked_box_processes(server_pid, ignore=()):
    """Box-uid processes below this module's server, or below no cutor process at all."""
    leaked = []
    for pid, chain in box_processes().items():
        if pid in ignore:
            continue
        pids = [p for p, _ in chain]
        below_ours = server_pid in pids
        below_any_cutor = any(name == "cutor" for _, name in chain)
        if below_ours or not below_any_cutor:
            leaked.append((pid, chain[:4]))
    return leaked


def host_mounts():
    """{(mount point, source)} of the host's mount namespace."""
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            after = fields[fields.index("-") + 1:]
            found.add((fields[4], after[1] if len(after) > 1 else ""))
    return found


# What the box mounts inside its own mount namespace (src/sandbox/mnt.cpp).
BOX_MOUNT_SOURCES = {"cutor-root", "cutor-tmp", "cutor-dev", "cutor-shm", "proc"}


def suspicious_new_mounts(before, server):
    """New host mounts a box could have caused. Other engineers' servers and benches run on
    this host at the same time and mount workspaces below /tmp and /work: those are not
    ours. Flagged: anything below this server's data dir (all its workspaces are gone by
    now), the box's own filesystems (sources named cutor-*, proc) showing up on the host,
    and any new mount outside /tmp and /work."""
    real_data = os.path.realpath(server.data_dir)
    flagged = []
    for point, source in host_mounts() - before:
        if (point == real_data or point.startswith(real_data + "/") or source in BOX_MOUNT_SOURCES
                or not point.startswith(("/tmp/", "/work/"))):
            flagged.append((point, source))
    return flagged


def box_owned_files():
    """Top-level entries of the host's shared directories owned by a box uid."""
    found = set()
    for d in SHARED_DIRS:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            try:
                st = os.lstat(os.path.join(d, name))
            except OSError:
                continue
            if st.st_uid in BOX_UIDS or st.st_gid in BOX_UIDS:
                found.add(os.path.join(d, name))
    return found


class Canary:
    """A host file (or directory) whose every observable property is recorded."""

    def __init__(self, path, content=None, is_dir=False):
        self.path = path
        self.is_dir = is_dir
        if is_dir:
            os.mkdir(path, 0o755)
            self.inner = os.path.join(path, "inside.txt")
            with open(self.inner, "w") as f:
                f.write("canary dir content " + secrets.token_hex(8))
        else:
            self.inner = path
            with open(path, "w") as f:
                f.write(content)
            os.chmod(path, 0o600 if path.startswith("/root") else 0o644)
        # An atime older than the mtime: under relatime (or strictatime) any read moves it.
        st = os.stat(self.inner)
        os.utime(self.inner, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
        self.before = self.snapshot()

    def snapshot(self):
        result = {}
        for p in {self.path, self.inner}:
            st = os.lstat(p)
            entry = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_ctime_ns,
                     st.st_atime_ns)
            if os.path.isdir(p):
                entry += (tuple(sorted(os.listdir(p))),)
            else:
                with open(p, "rb") as f:
                    entry += (hashlib.sha256(f.read()).hexdigest(),)
            # Our own read just now moved the atime: put it back (that changes the ctime,
            # which is why check() does not compare ctimes).
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
            result[p] = entry
        return result

    def check(self):
        now = self.snapshot()
        # Compare everything but ctime (our utime() above changes it each time).
        def strip(snap):
            return {k: v[:4] + v[5:] for k, v in snap.items()}
        assert strip(now) == strip(self.before), (
            f"host canary {self.path} changed: before {self.before}, now {now}"
        )

    def remove(self):
        if self.is_dir:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


@pytest.fixture(scope="module")
def canaries(tmp_path_factory):
    token = secrets.token_hex(6)
    base = tmp_path_factory.mktemp("canaries")
    # The check relies on reads moving the atime: prove this host does.
    probe = base / "atime-probe"
    probe.write_text("probe")
    st = os.stat(probe)
    os.utime(probe, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
    before = os.stat(probe).st_atime_ns
    probe.read_text()
    assert os.stat(probe).st_atime_ns != before, (
        "reads do not update atime here: canaries cannot detect reads")
    made = {
        "secret": Canary(f"/root/cutor-secret-{token}", "TOPSECRET-" + secrets.token_hex(16)),
        "etc": Canary(f"/etc/cutor-canary-{token}", "etc canary " + secrets.token_hex(16)),
        "tmp": Canary(str(base / f"cutor-canary-{token}"), "tmp canary " + secrets.token_hex(16)),
        "dir": Canary(str(base / f"cutor-canary-dir-{token}"), is_dir=True),
    }
    yield made
    for c in made.values():
        c.remove()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module's server: 2 workers (two boxes at once for the concurrency tests), with a
    secret in its environment that no box may see."""
    base = tmp_path_factory.mktemp("adv-server")
    # Nix evaluates against the offline test nixpkgs and never asks a substituter (no
    # traffic leaves the host).
    nixpkgs = os.path.join(os.path.dirname(PROGRAMS), "nixpkgs")
    srv = Server(base / "data", base, extra_args=[
        "--workers", "2", "--nix-path", f"nixpkgs={nixpkgs}", "--substituters", ""])
    os.environ[SERVER_SECRET_ENV] = SERVER_SECRET
    try:
        srv.start()
    finally:
        del os.environ[SERVER_SECRET_ENV]
    # The secret really is in the server's environment (or the tests looking for it prove
    # nothing).
    with open(f"/proc/{srv.proc.pid}/environ", "rb") as f:
        assert SERVER_SECRET.encode() in f.read()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def client(server):
    return server.client


@pytest.fixture(autouse=True)
def host_guard(request, server, canaries):
    """Asserts after each test that the host is as it was (see the module docstring)."""
    mounts_before = host_mounts()
    files_before = box_owned_files()
    ignore = set()
    request.node.host_guard_ignore = ignore
    yield
    work = os.path.join(server.data_dir, "work")
    leaks = []
    try:
        wait_until(lambda: not leaked_box_processes(server.proc.pid, ignore), timeout=10,
                   what="no box process left")
    except AssertionError:
        leaks.append(f"box processes left: {leaked_box_processes(server.proc.pid, ignore)}")
    try:
        wait_until(lambda: not os.path.isdir(work) or not os.listdir(work), timeout=10,
                   what="workspaces removed")
    except AssertionError:
        leaks.append(f"workspaces left in {work}: {os.listdir(work)}")
    new_mounts = suspicious_new_mounts(mounts_before, server)
    if new_mounts:
        leaks.append(f"new host mounts: {new_mounts}")
    new_files = box_owned_files() - files_before
    if new_files:
        leaks.append(f"files of a box uid appeared on the host: {sorted(new_files)}")
    for c in canaries.values():
        try:
            c.check()
        except AssertionError as e:
            leaks.append(str(e))
    assert server.proc.poll() is None, "the server died"
    assert not leaks, "host changed: " + "; ".join(leaks)


# --- running programs ----------------------------------------------------------------

C_COMPILE = "gcc -O1 -D_GNU_SOURCE -o prog prog.c -lpthread\n"
C_RUN = 'exec ./prog "$@"\n'


def c_files(name):
    return {
        "compile.sh": C_COMPILE,
        "prog.c": program(name),
        "sys_report.h": program("sys_report.h"),
        "run.sh": C_RUN,
    }


def run_c(client, name, args=(), limits=None, timeout=120):
    body = submission(c_files(name), args=list(args))
    if limits:
        body["limits"] = {"run": limits}
    sub = client.run(body, timeout=timeout)
    assert sub["compile"]["status"] == "OK", sub["compile"]
    return sub


def run_script(client, name, args=(), limits=None, timeout=120):
    files = {"run.sh": program(name)} if name.endswith(".sh") else {
        "run.sh": f'exec python3 {name} "$@"\n',
        name: program(name),
    }
    body = submission(files, args=list(args))
    if limits:
        body["limits"] = {"run": limits}
    return client.run(body, timeout=timeout)


CPU_LIMIT_VERDICT = ("TIME_LIMIT_EXCEEDED", "TIME_LIMIT_EXCEEDED", None, "SIGKILL")
WALL_LIMIT_VERDICT = ("TIME_LIMIT_EXCEEDED", "WALL_TIME_LIMIT_EXCEEDED", None, "SIGKILL")


def verdict(sub):
    run = sub["run"]
    return (sub["result"], run["status"], run["code"], run["signal"])


def attempts(stdout):
    """{"<what>": "<errno or OK>"} from the probes' "<what>: <result>" lines."""
    out = {}
    for line in stdout.splitlines():
        if ": " in line:
            what, _, res = line.rpartition(": ")
            out[what] = res
    return out


def assert_all_refused(sub, expected):
    """The run was OK and printed exactly `expected` (what -> errno name)."""
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    got = attempts(sub["run"]["stdout"])
    assert got == expected, f"expected {expected}, got {got}; output:\n{sub['run']['output']}"


# --- host secrets and host paths -------------------------------------------------------


def test_secret_by_path_proc_roots_and_dotdot(server, client, canaries):
    secret = canaries["secret"].path
    sub = run_script(client, "secret_paths.sh", args=[secret, str(server.proc.pid)])
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    out = sub["run"]["output"]
    assert "LEAK" not in out and "TOPSECRET" not in out, out
    assert out.count("denied ") >= 9, out


def test_secret_through_workspace_symlinks(client, canaries):
    secret = canaries["secret"].path
    sub = run_script(client, "secret_symlink.sh", args=[secret])
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    out = sub["run"]["stdout"]
    assert "made leak1" in out and "made leak2" in out and "made leak3" in out, out
    assert "LEAK" not in out and "TOPSECRET" not in sub["run"]["output"], out
    assert out.count("denied ") == 4, out


def test_secret_by_dotdot_from_c(client, canaries):
    sub = run_c(client, "escape_dotdot.c", args=[canaries["secret"].path])
    names = ["open ../ path", "open /box/../ path", "openat dirfd ../",
             "open after chdir ..", "open absolute"]
    # The paths resolve in the box's view, where /root is an empty directory of root's.
    assert_all_refused(sub, {n: "EACCES" for n in names})


def test_host_directories_are_not_listable(server, client, canaries):
    host_paths = [
        os.path.dirname(canaries["tmp"].path),
        canaries["dir"].path,
        server.data_dir,
        os.path.realpath(server.data_dir),
        os.path.dirname(os.path.realpath(server.data_dir)),
        "/tmp",
    ]
    sub = run_script(client, "host_listing.sh", args=host_paths)
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    out = sub["run"]["stdout"]
    assert "LEAK" not in out, out
    for line in out.splitlines():
        if line.startswith("listed "):
            # The box's own /tmp and /home exist and are empty; nothing of the host shows.
            assert line.rstrip().endswith(":"), f"host directory content visible: {line}"
    assert "inside.txt" not in out, out
    assert "denied /etc/shadow" in out, out


def test_proc_of_box_init_and_server_environment(client, canaries):
    sub = run_script(client, "proc_snoop.sh")
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    out = sub["run"]["output"]
    assert "LEAK" not in out, out
    assert out.count("denied /proc/1/") == 10, out
    assert SERVER_SECRET not in out and SERVER_SECRET_ENV not in out, (
        "the server's environment reached the box"
    )
    # The cgroup namespace: every hierarchy's path is its root, nothing of the host's tree.
    cgroups = out.split("--- cgroup\n", 1)[1].splitlines()
    assert cgroups and all(re.fullmatch(r"\d+:[^:]*:/", line) for line in cgroups), cgroups


def test_proc_does_not_reveal_host_paths(server, client):
    sub = run_script(client, "proc_cmdline.sh")
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    out = sub["run"]["output"]
    assert os.path.realpath(server.data_dir) not in out and server.data_dir not in out, out
    assert f"127.0.0.1:{server.port}" not in out, out


def test_no_inherited_file_descriptors(client):
    sub = run_c(client, "fd_leak.c")
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == "0 inherited fds\n", sub["run"]["stdout"]


# --- read-only mounts -----------------------------------------------------------------


def test_read_only_mounts_stay_read_only(client):
    watched = ["/etc/ld.so.cache", "/etc/nsswitch.conf", "/etc/hosts", "/etc/passwd",
               "/usr/bin/env"]
    before = {p: (os.stat(p).st_mode, open(p, "rb").read()) for p in watched}
    hostname = socket.gethostname()
    sub = run_script(client, "write_ro.sh")
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    out = sub["run"]["stdout"]
    assert "WROTE" not in out, out
    assert out.count("refused: ") == 17 and out.endswith("done\n"), out
    for p in watched:
        assert (os.stat(p).st_mode, open(p, "rb").read()) == before[p], f"{p} changed"
    for p in ("/usr/cutor-adv", "/cutor-adv", "/bin/cutor-adv", "/lib/cutor-adv",
              "/usr/cutor-adv-link"):
        assert not os.path.lexists(p), f"the box created {p} on the host"
    assert socket.gethostname() == hostname


def test_mount_and_remount_refused(client):
    sub = run_c(client, "sys_mount.c")
    names = ["mount tmpfs /tmp", "remount /usr rw", "remount / rw", "bind /proc over /box",
             "umount /proc", "umount /usr", "fsopen tmpfs", "open_tree /", "pivot_root",
             "chroot /tmp"]
    assert_all_refused(sub, {n: "EPERM" for n in names})


# --- network --------------------------------------------------------------------------


class HostListeners:
    """TCP on 127.0.0.1 and ::1, an abstract unix socket and UDP on 127.0.0.1, recording
    anything that arrives."""

    def __init__(self):
        self.received = []
        self.sockets = []
        self.tcp4 = self._tcp(socket.AF_INET, "127.0.0.1")
        self.tcp6 = self._tcp(socket.AF_INET6, "::1")
        self.abstract = "cutor-adv-host-" + secrets.token_hex(6)
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.bind("\0" + self.abstract)
        u.listen(8)
        self.sockets.append(u)
        d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        d.bind(("127.0.0.1", 0))
        self.udp = d.getsockname()[1]
        self.sockets.append(d)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _tcp(self, family, addr):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((addr, 0))
        s.listen(8)
        self.sockets.append(s)
        return s.getsockname()[1]

    def _watch(self):
        import select

        while not self.stop.is_set():
            ready, _, _ = select.select(self.sockets, [], [], 0.1)
            for s in ready:
                if s.type == socket.SOCK_DGRAM:
                    self.received.append(("udp", s.recv(4096)))
                else:
                    conn, _ = s.accept()
                    self.received.append(("accepted", s.getsockname()))
                    conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for s in self.sockets:
            s.close()


def test_network_cannot_reach_host_loopback_listeners(client):
    listeners = HostListeners()
    try:
        sub = run_script(
            client,
            "net_connect.py",
            args=[str(listeners.tcp4), str(listeners.tcp6), listeners.abstract, str(listeners.udp)],
        )
        time.sleep(0.3)  # let a datagram that did get through be read
    finally:
        listeners.close()
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    out = sub["run"]["stdout"]
    assert "CONNECTED" not in out, out
    assert out.count("refused ") == 3 and "udp sent" in out, out
    assert listeners.received == [], f"the host received traffic from the box: {listeners.received}"


def test_network_only_loopback_interface(client):
    sub = run_script(client, "net_interfaces.py")
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == (
        "by_index ['lo']\nproc_net_dev ['lo']\nroutes 0\n"
    ), sub["run"]["stdout"]


def test_network_packet_netlink_and_raw_sockets_refused(client):
    sub = run_c(client, "net_probe.c")
    assert_all_refused(sub, {
        "socket AF_PACKET": "EAFNOSUPPORT",
        "socket AF_NETLINK route": "EAFNOSUPPORT",
        "socket AF_NETLINK audit": "EAFNOSUPPORT",
        "socket raw icmp": "EPERM",
        "socket AF_VSOCK": "EAFNOSUPPORT",
    })


# --- processes: bombs, kill -9 -1, daemons ----------------------------------------------


class BoxProcessSampler:
    """Samples, in a thread, the number of box-uid processes below the server."""

    def __init__(self, server_pid):
        self.server_pid = server_pid
        self.max_seen = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            n = sum(1 for chain in box_processes().values()
                    if self.server_pid in [p for p, _ in chain])
            self.max_seen = max(self.max_seen, n)
            time.sleep(0.05)

    def close(self):
        self.stop.set()
        self.thread.join(5)


def test_fork_bomb_is_bounded_and_stopped(server, client):
    sampler = BoxProcessSampler(server.proc.pid)
    try:
        sid = client.submit(submission(
            c_files("fork_bomb.c"),
            limits={"run": {"processes": 32, "cpu_time_ms": 1000, "wall_time_ms": 20000}},
        ))["id"]
        client.poll_until(sid, lambda s: s["status"] in ("RUNNING", "FINISHED"), timeout=60)
        # The service keeps answering while the bomb runs.
        assert client.get("/api/v1/health", timeout=5).status == 200
        sub = client.wait_finished(sid, timeout=60)
    finally:
        sampler.close()
    assert sub["compile"]["status"] == "OK", sub["compile"]
    assert verdict(sub) == CPU_LIMIT_VERDICT, sub["run"]
    assert 1 <= sampler.max_seen <= 32, f"{sampler.max_seen} box processes at once"


def test_shell_fork_bomb_is_bounded(server, client):
    sampler = BoxProcessSampler(server.proc.pid)
    try:
        sub = run_script(client, "shell_fork_bomb.sh",
                         limits={"processes": 32, "cpu_time_ms": 20000, "wall_time_ms": 20000})
    finally:
        sampler.close()
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == "survived\n", sub["run"]
    assert sampler.max_seen <= 32, f"{sampler.max_seen} box processes at once"


def test_thread_bomb_is_bounded(client):
    sub = run_c(client, "thread_bomb.c", limits={"processes": 40})
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    m = re.fullmatch(r"threads (\d+)\n", sub["run"]["stdout"])
    assert m and 0 < int(m.group(1)) < 40, sub["run"]["stdout"]


def test_kill_minus_one_reaches_only_the_box(tmp_path, server):
    """Through `cutor run`: kill -9 -1 kills the box's own children, not init, not the host."""
    d = tmp_path / "killall"
    d.mkdir()
    (d / "run.sh").write_text(program("kill_all.sh"))
    victim = subprocess.Popen(["sleep", "60"])
    env = dict(os.environ, TMPDIR=str(tmp_path))
    try:
        r = subprocess.run([cutor_bin(), "run", str(d)], capture_output=True,
                           timeout=scaled(120), env=env)
        assert victim.poll() is None, "a host process died"
    finally:
        victim.kill()
        victim.wait()
    assert sanitizer_report(r.stderr.decode("utf-8", "replace")) is None, r.stderr
    sub = json.loads(r.stdout)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == (
        "child ended with 137\ninit refused SIGKILL\ninit refused SIGSTOP\nstill alive\n"
    ), sub["run"]
    assert [p for p in os.listdir(tmp_path) if p.startswith("cutor-run-")] == []


def test_kill_loop_spares_a_concurrent_box_and_host_processes_of_box_uids(request, client):
    # Host processes running as the uids boxes get: in one pid namespace, kill -9 -1 from a
    # box with the same uid would reach them.
    marker = "4242." + str(os.getpid())
    victims = [subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                                 "sleep", f"{marker}{uid % 10}"]) for uid in (60000, 60001)]
    request.node.host_guard_ignore.update(v.pid for v in victims)
    try:
        victim_sid = client.submit(submission(
            {"run.sh": "sleep 5; echo victim-ok"}, limits={"run": {"wall_time_ms": 30000}}))["id"]
        client.poll_until(victim_sid, lambda s: s["status"] == "RUNNING", timeout=60)
        killer = run_script(client, "kill_loop.sh", args=["3"])
        victim = client.wait_finished(victim_sid, timeout=60)
        alive = [v.poll() is None for v in victims]
    finally:
        for v in victims:
            v.kill()
            v.wait()
    assert verdict(killer) == ("OK", "OK", 0, None), killer["run"]
    assert killer["run"]["stdout"].startswith("sent "), killer["run"]
    assert verdict(victim) == ("OK", "OK", 0, None), victim["run"]
    assert victim["run"]["stdout"] == "victim-ok\n", victim["run"]
    assert alive == [True, True], "a host process of a box uid was killed from a box"


def test_setsid_daemon_dies_with_the_stage(client):
    marker = "cutor-adv-daemon-" + secrets.token_hex(4)
    sub = run_script(client, "setsid_daemon.sh", args=[marker])
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == "left behind\n", sub["run"]
    wait_until(lambda: not processes_with_marker(marker), timeout=5,
               what="the setsid daemon to be gone")


def test_double_fork_daemon_ignoring_signals_dies_with_the_stage(client):
    marker = "cutor-adv-cdaemon-" + secrets.token_hex(4)
    sub = run_c(client, "daemon.c", args=[marker])
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == "daemon started\n", sub["run"]
    wait_until(lambda: not processes_with_marker(marker), timeout=5,
               what="the daemon to be gone")


def test_cpu_time_of_auto_reaped_children_is_counted(client):
    sub = run_c(client, "cpu_hidden_children.c",
                limits={"cpu_time_ms": 500, "wall_time_ms": 30000})
    assert verdict(sub) == CPU_LIMIT_VERDICT, sub["run"]


def test_self_stopped_stage_ends_at_wall_limit(client):
    sub = run_script(client, "self_stop.sh", limits={"wall_time_ms": 2000})
    assert verdict(sub) == WALL_LIMIT_VERDICT, sub["run"]
    assert sub["run"]["stdout"] == "stopping\n", sub["run"]


def test_background_process_holding_stdout_does_not_extend_the_stage(client):
    sub = run_script(client, "hold_stdout.sh", limits={"wall_time_ms": 20000})
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == "main-done\n", sub["run"]
    assert sub["run"]["wall_time_ms"] < 10000, sub["run"]


def test_closed_stdio_does_not_end_the_stage(client):
    sub = run_script(client, "close_stdio.sh")
    assert verdict(sub) == ("RUNTIME_ERROR", "NONZERO_EXIT", 3, None), sub["run"]
    assert sub["run"]["stdout"] == "before-close\n", sub["run"]
    assert sub["run"]["wall_time_ms"] >= 900, sub["run"]


def test_core_pattern_and_core_limit(client):
    with open("/proc/sys/kernel/core_pattern") as f:
        before = f.read()
    sub = run_script(client, "core_pattern.sh")
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == (
        "refused core_pattern\nrefused core limit\ncore limit 0\n"), sub["run"]
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == before


def test_rlimits_cannot_be_raised(client):
    sub = run_c(client, "rlimit_raise.c")
    assert_all_refused(sub, {
        "raise RLIMIT_NPROC": "EPERM", "raise RLIMIT_FSIZE": "EPERM", "raise RLIMIT_CPU": "EPERM",
        "raise RLIMIT_CORE": "EPERM", "raise RLIMIT_STACK": "EPERM", "priority -20": "EACCES",
    })


def test_terminal_injection_refused(client):
    sub = run_c(client, "tty_inject.c")
    assert_all_refused(sub, {
        "open /dev/tty": "ENOENT", "TIOCSTI fd 0": "EPERM", "TIOCSTI fd 1": "EPERM",
        "TIOCSTI fd 2": "EPERM", "TIOCSTI high bits": "EPERM", "setsid again": "EPERM",
    })


def test_host_binary_cannot_be_overwritten_through_proc(client):
    binary = os.path.realpath(cutor_bin())
    with open(binary, "rb") as f:
        before = hashlib.sha256(f.read()).hexdigest()
    sub = run_c(client, "proc_exe_overwrite.c", args=[binary])
    assert_all_refused(sub, {
        "open /proc/1/exe for writing": "EACCES", "open /proc/1/exe O_PATH": "EACCES",
        "open /proc/1/fd/0": "EACCES", "opendir /proc/1/map_files": "EACCES",
        "open /proc/1/mem": "EACCES", "open host binary path": "ENOENT",
    })
    with open(binary, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == before, "the host's cutor binary changed"


def test_compile_stage_daemon_does_not_reach_the_run_stage(client):
    sub = client.run(submission({"compile.sh": program("compile_daemon.sh"),
                                 "run.sh": program("check_ticks.sh")}))
    assert sub["compile"]["status"] == "OK", sub["compile"]
    assert sub["compile"]["stdout"] == "daemons: 1\ncompiled\n", sub["compile"]
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == "ticks seen stopped\ndaemons: 0\n", sub["run"]


def test_large_stdin_ignored_while_writing_stdout(client):
    body = submission({"run.sh": program("stdin_ignored.sh")}, stdin="s" * (8 << 20),
                      limits={"run": {"output_bytes": 4 << 20, "wall_time_ms": 20000}})
    sub = client.run(body)
    assert verdict(sub) == ("OK", "OK", 0, None), {
        k: v for k, v in sub["run"].items() if k not in ("output", "stdout")}
    assert sub["run"]["stdout"] == "a" * 2000000
    assert sub["run"]["wall_time_ms"] < 10000, sub["run"]["wall_time_ms"]


def test_boxes_of_two_servers_do_not_share_a_process_budget(make_server):
    """Two servers on one host (or a server and `cutor run`): a box of one holding
    processes must not eat the process limit of a box of the other."""
    first, second = make_server(["--workers", "1"]), make_server(["--workers", "1"])
    holder = first.client.submit(submission(
        {"run.sh": program("hold_procs.sh")}, args=["40"],
        limits={"run": {"processes": 64, "wall_time_ms": 30000}}))["id"]
    first.client.poll_until(holder, lambda s: s["status"] in ("RUNNING", "FINISHED"), timeout=60)
    # The holder starts its 40 processes within milliseconds of RUNNING; this box compiles
    # first and waits a second more, then counts what it can start.
    files = dict(c_files("thread_bomb.c"), **{"run.sh": "sleep 1; exec ./prog"})
    sub = second.client.run(submission(files, limits={"run": {"processes": 30}}))
    during = first.client.get_submission(holder)
    held = first.client.wait_finished(holder)
    assert during["status"] == "RUNNING", "the holder ended before the other box counted"
    assert held["run"]["stdout"].startswith("holding 40 uid "), held["run"]
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    m = re.fullmatch(r"threads (\d+)\n", sub["run"]["stdout"])
    assert m and 25 <= int(m.group(1)) < 30, (
        f"a box of the second server could start only {m and m.group(1)} of its 30 processes "
        f"while a box of the first server ({held['run']['stdout'].strip()}) held 40"
    )


def test_stdin_closed_early_does_not_hurt_the_server(server, client):
    sub = client.run(submission({"run.sh": program("stdin_closed.sh")}, stdin="s" * (8 << 20)))
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == "closed\n", sub["run"]
    assert server.proc.poll() is None, "the server died writing stdin to a closed pipe"
    assert client.get("/api/v1/health", timeout=5).status == 200


# --- memory ----------------------------------------------------------------------------

MIB = 1 << 20


def test_memory_bomb_touched(client):
    sub = run_c(client, "mem_touched.c", args=["192"], limits={"memory_bytes": 64 * MIB})
    assert sub["result"] == "MEMORY_LIMIT_EXCEEDED", sub["run"]
    assert sub["run"]["status"] == "MEMORY_LIMIT_EXCEEDED", sub["run"]
    assert "survived" not in sub["run"]["stdout"], sub["run"]


def test_memory_untouched_64g_reservation_is_ok(client):
    sub = run_c(client, "mem_untouched.c", limits={"memory_bytes": 64 * MIB})
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == "reserved 64 GiB, touched 64 pages\n", sub["run"]
    assert sub["run"]["memory_bytes"] < 64 * MIB, sub["run"]


def test_memory_split_across_processes(client):
    sub = run_c(client, "mem_fork_split.c", limits={"memory_bytes": 64 * MIB})
    assert sub["result"] == "MEMORY_LIMIT_EXCEEDED", sub["run"]
    assert sub["run"]["status"] == "MEMORY_LIMIT_EXCEEDED", sub["run"]
    # Either the whole box was killed, or the OOM killer took at least one child.
    assert sub["run"]["stdout"] == "" or re.fullmatch(
        r"[1-4] children killed\n", sub["run"]["stdout"]), sub["run"]


def test_memory_in_a_memfd(client):
    sub = run_c(client, "mem_memfd.c", limits={"memory_bytes": 64 * MIB})
    assert sub["result"] == "MEMORY_LIMIT_EXCEEDED", sub["run"]
    assert sub["run"]["status"] == "MEMORY_LIMIT_EXCEEDED", sub["run"]


def test_memory_bomb_in_python(client):
    sub = run_script(client, "mem_python.py", limits={"memory_bytes": 64 * MIB})
    assert sub["result"] == "MEMORY_LIMIT_EXCEEDED", sub["run"]
    assert sub["run"]["status"] == "MEMORY_LIMIT_EXCEEDED", sub["run"]


def test_memory_in_kernel_socket_buffers(client):
    sub = run_c(client, "socket_buffers.c", args=["256"], limits={"memory_bytes": 64 * MIB})
    assert sub["result"] == "MEMORY_LIMIT_EXCEEDED", sub["run"]
    assert sub["run"]["status"] == "MEMORY_LIMIT_EXCEEDED", sub["run"]
    assert "queued 256 MiB" not in sub["run"]["stdout"], sub["run"]


def test_stack_bomb_segfaults(client):
    sub = run_c(client, "stack_bomb.c")
    assert verdict(sub) == ("RUNTIME_ERROR", "SIGNALED", None, "SIGSEGV"), sub["run"]
    assert sub["run"]["stdout"] == "recursing\n", sub["run"]


# --- output and files -------------------------------------------------------------------


def test_10gb_to_stdout(client):
    sub = run_script(client, "stdout_10g.sh", limits={"output_bytes": 100000})
    assert sub["result"] == "OUTPUT_LIMIT_EXCEEDED", sub["run"]
    assert sub["run"]["status"] == "OUTPUT_LIMIT_EXCEEDED", sub["run"]
    assert len(sub["run"]["stdout"]) == 100000, len(sub["run"]["stdout"])
    assert set(sub["run"]["stdout"]) <= set("ay\n"), sub["run"]["stdout"][:100]


def test_10gb_to_stdout_and_stderr_at_once(client):
    sub = run_c(client, "stdout_flood.c", limits={"output_bytes": 100000})
    assert sub["result"] == "OUTPUT_LIMIT_EXCEEDED", sub["run"]
    assert sub["run"]["status"] == "OUTPUT_LIMIT_EXCEEDED", sub["run"]
    out, err = sub["run"]["stdout"], sub["run"]["stderr"]
    # The stream that crossed the limit first holds exactly output_bytes; neither more.
    assert 100000 in (len(out), len(err)), (len(out), len(err))
    assert len(out) <= 100000 and len(err) <= 100000 and len(out) > 0 and len(err) > 0
    assert set(out) == {"o"} and set(err) == {"e"}
    assert len(sub["run"]["output"]) <= 200000, len(sub["run"]["output"])


def test_file_past_size_limit_is_sigxfsz(client):
    sub = run_script(client, "fsize_signal.sh", limits={"file_size_bytes": 1000000})
    assert verdict(sub) == ("RUNTIME_ERROR", "SIGNALED", None, "SIGXFSZ"), sub["run"]


def test_file_past_size_limit_with_sigxfsz_ignored(client):
    sub = run_c(client, "fsize_ignored.c", limits={"file_size_bytes": 1000000})
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == "EFBIG size 1000000\n", sub["run"]


def _fill(client, directory, cap):
    sub = run_c(client, "fill_dir.c", args=[directory],
                limits={"memory_bytes": 1 << 30, "wall_time_ms": 60000, "cpu_time_ms": 30000})
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    m = re.fullmatch(r"ENOSPC after (\d+) bytes\n", sub["run"]["stdout"])
    assert m, sub["run"]["stdout"]
    assert 0 < int(m.group(1)) <= cap, sub["run"]["stdout"]
    # The service is fine afterwards.
    after = client.run(submission({"run.sh": "echo fine"}))
    assert after["result"] == "OK" and after["run"]["stdout"] == "fine\n", after


def test_filling_tmp(client):
    _fill(client, "/tmp", 64 * MIB)


def test_filling_dev_shm(client):
    _fill(client, "/dev/shm", 64 * MIB)


def test_filling_the_workspace(client):
    _fill(client, "/box", 256 * MIB)


def test_deep_tree_of_links_and_fifos_is_cleaned_up(client):
    sub = run_script(client, "deep_tree.sh", limits={"wall_time_ms": 60000, "cpu_time_ms": 30000})
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == "depth 300\n", sub["run"]


# --- kernel interfaces --------------------------------------------------------------------


def test_unshare_and_setns_refused(client):
    sub = run_c(client, "sys_unshare.c")
    assert_all_refused(sub, {
        "unshare user": "EPERM", "unshare mount": "EPERM", "unshare net": "EPERM",
        "unshare pid": "EPERM", "clone newuser": "EPERM", "clone newns": "EPERM",
        "clone3 newuser": "ENOSYS", "open /proc/1/ns/mnt": "EACCES", "setns mnt": "EPERM",
    })


def test_ptrace_and_process_vm_refused(client):
    sub = run_c(client, "sys_ptrace.c")
    names = ["ptrace attach child", "ptrace seize child", "ptrace attach init",
             "process_vm_readv child", "process_vm_writev child", "ptrace traceme"]
    assert_all_refused(sub, {n: "EPERM" for n in names})


def test_keyctl_refused(client):
    sub = run_c(client, "sys_keyctl.c")
    names = ["add_key", "request_key", "keyctl get_keyring_id", "keyctl join_session"]
    assert_all_refused(sub, {n: "EPERM" for n in names})


def test_io_uring_refused(client):
    sub = run_c(client, "sys_io_uring.c")
    names = ["io_uring_setup", "io_uring_enter", "io_uring_register"]
    assert_all_refused(sub, {n: "EPERM" for n in names})


def host_signal_of_int80(tmp_path):
    """How an int 0x80 getpid ends on this host, outside any sandbox: None when the kernel
    serves it, else the signal's name (some hypervisors' guests refuse int 0x80 with
    SIGSEGV whatever the filter says)."""
    src = tmp_path / "int80_probe.c"
    src.write_text('int main(void) { long r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L)'
                   ' : "memory"); return r > 0 ? 0 : 1; }\n')
    subprocess.run(["gcc", "-O0", "-o", str(tmp_path / "int80_probe"), str(src)], check=True,
                   timeout=60)
    rc = subprocess.run([str(tmp_path / "int80_probe")], timeout=30).returncode
    assert rc == 0 or rc < 0, f"int 0x80 getpid exited {rc} on the host"
    return None if rc == 0 else signal.Signals(-rc).name


def test_32bit_int80_syscall_is_killed(client, tmp_path):
    sub = run_c(client, "sys_int80.c")
    # Where the host serves int 0x80, the filter must kill the program first (SIGSYS).
    # Where the host itself refuses it (SIGSEGV on some hypervisors' guests), which of the
    # two comes first depends on the guest's entry path; either way no syscall ran.
    host = host_signal_of_int80(tmp_path)
    signals = {"SIGSYS"} if host is None else {"SIGSYS", host}
    assert verdict(sub)[:3] == ("RUNTIME_ERROR", "SIGNALED", None), sub["run"]
    assert sub["run"]["signal"] in signals, sub["run"]
    assert sub["run"]["stdout"] == "before\n", sub["run"]


def test_x32_syscall_does_not_get_through(client):
    sub = run_c(client, "sys_x32.c")
    assert verdict(sub) == ("RUNTIME_ERROR", "SIGNALED", None, "SIGSYS"), sub["run"]
    assert sub["run"]["stdout"] == "before\n", sub["run"]


def test_other_privileged_syscalls_refused(client):
    sub = run_c(client, "sys_misc.c")
    names = ["bpf map_create", "perf_event_open", "userfaultfd", "open_by_handle_at",
             "name_to_handle_at", "kexec_load", "init_module", "reboot", "swapoff",
             "syslog read", "acct", "sethostname", "personality no-aslr", "iopl"]
    assert_all_refused(sub, {n: "EPERM" for n in names})


def test_default_deny_unlisted_syscalls_modify_ldt_and_socket_families(client):
    sub = run_c(client, "sys_default_deny.c")
    expected = {
        "modify_ldt read": "EPERM",
        # On no allow list: ENOSYS, as from a kernel without them (each works on the host).
        "io_setup": "ENOSYS", "adjtimex read": "ENOSYS", "get_robust_list self": "ENOSYS",
        "set_mempolicy default": "ENOSYS", "move_pages self": "ENOSYS", "sysfs count": "ENOSYS",
        "landlock_create_ruleset version": "ENOSYS",
        "socket AF_ALG high bits": "EAFNOSUPPORT",
        "socket AF_UNIX": "OK", "socket AF_UNIX high bits": "OK", "socket AF_INET": "OK",
        "socket AF_INET6": "OK", "socketpair AF_UNIX": "OK", "personality query": "OK",
        "personality PER_LINUX": "OK", "mkfifo": "OK",
    }
    for family in range(46):
        if family not in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
            expected[f"socket family {family}"] = "EAFNOSUPPORT"
            expected[f"socketpair family {family}"] = "EAFNOSUPPORT"
    assert_all_refused(sub, expected)


def test_identity_cannot_be_raised(client):
    sub = run_c(client, "setuid_self.c")
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    lines = sub["run"]["stdout"].splitlines()
    got = attempts("\n".join(lines[:-1]))
    names = ["setuid 0", "setresuid 0", "setgid 0", "setgroups root", "setuid 60999",
             "capset all", "ambient raise", "chown workspace to root"]
    assert got == {n: "EPERM" for n in names}, sub["run"]["stdout"]
    m = re.fullmatch(r"uid (\d+) euid (\d+) gid (\d+) nnp 1", lines[-1])
    assert m and len({m.group(1), m.group(2), m.group(3)}) == 1, lines[-1]
    assert int(m.group(1)) in BOX_UIDS, lines[-1]


def test_setuid_binaries_give_nothing(client):
    sub = run_script(client, "setuid_bins.sh")
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    out = sub["run"]["stdout"]
    assert "LEAK" not in out, out
    assert "setuid present /usr/bin/su" in out or "setuid present /bin/su" in out, (
        "no setuid binary to try: the test proves nothing", out)
    lines = out.splitlines()
    uid = re.fullmatch(r"uid (\d+) euid (\d+)", lines[-1])
    assert uid and uid.group(1) == uid.group(2) and int(uid.group(1)) in BOX_UIDS, out
    assert lines[-2] == uid.group(1), f"a setuid copy ran as {lines[-2]}"


# --- two boxes at once ----------------------------------------------------------------------


def test_two_concurrent_boxes_cannot_see_each_other(client):
    a, b = "cutor-adv-peer-a-" + secrets.token_hex(4), "cutor-adv-peer-b-" + secrets.token_hex(4)
    limits = {"run": {"wall_time_ms": 30000}}
    sa = client.submit(submission(c_files("peer.c"), args=[a, b], limits=limits))["id"]
    sb = client.submit(submission(c_files("peer.c"), args=[b, a], limits=limits))["id"]
    ra, rb = client.wait_finished(sa, timeout=120), client.wait_finished(sb, timeout=120)
    windows = []
    for sub in (ra, rb):
        assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
        lines = sub["run"]["stdout"].splitlines()
        assert lines[1] == "peer proc 0 sock 0 shm 0 file 0", sub["run"]["stdout"]
        windows.append([float(x) for x in lines[0].split()[1:]])
    (a0, a1), (b0, b1) = windows
    assert min(a1, b1) - max(a0, b0) > 1.0, (
        f"the two boxes did not look at the same time: {windows}; the test proves nothing"
    )


# --- plants: symlinks, FIFOs and hardlinks named like what the host touches --------------------

PLANT_FILES = {
    "main.c": "int main(void) { return 0; }\n",
    "src/lib.c": "int lib;\n",
}


def _plant_then_check_service(client, canaries, mode):
    files = {"run.sh": 'sh plant.sh "$@"', "plant.sh": program("plant.sh"), **PLANT_FILES,
             "compile.sh": "gcc -o main main.c"}
    sub = client.run(submission(files, args=[mode, canaries["etc"].path, canaries["dir"].path]))
    after = client.run(submission({"run.sh": "cat input.txt", "input.txt": "still serving"}))
    assert after["result"] == "OK" and after["run"]["stdout"] == "still serving", after
    return sub


def test_plant_symlinks_in_run_stage(client, canaries):
    sub = _plant_then_check_service(client, canaries, "symlink")
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"].endswith("planted\n"), sub["run"]
    assert f"run.sh -> {canaries['etc'].path}" in sub["run"]["stdout"], sub["run"]["stdout"]


def test_plant_fifos_in_run_stage(client, canaries):
    sub = _plant_then_check_service(client, canaries, "fifo")
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert re.search(r"^p.* run\.sh$", sub["run"]["stdout"], re.M), sub["run"]["stdout"]


def test_plant_hardlinks_to_host_files_fail(client, canaries):
    sub = _plant_then_check_service(client, canaries, "hardlink")
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    out = sub["run"]["stdout"]
    assert "LEAK" not in out, out
    assert out.count("no hardlink for ") == 9, out


def _plant_in_compile(client, canaries, mode, run_limits=None):
    files = {"compile.sh": f'sh plant.sh {mode} "{canaries["etc"].path}" "{canaries["dir"].path}"',
             "plant.sh": program("plant.sh"), "run.sh": "echo run stage ran", **PLANT_FILES}
    body = submission(files)
    if run_limits:
        body["limits"] = {"run": run_limits}
    sub = client.run(body)
    assert sub["compile"]["status"] == "OK", sub["compile"]
    assert sub["compile"]["stdout"].endswith("planted\n"), sub["compile"]
    after = client.run(submission({"run.sh": "echo fine"}))
    assert after["result"] == "OK" and after["run"]["stdout"] == "fine\n", after
    return sub


def test_plant_symlinks_in_compile_stage(client, canaries):
    sub = _plant_in_compile(client, canaries, "symlink")
    # run.sh is now a link to a path that exists only on the host: the box's sh cannot open it.
    assert sub["result"] == "RUNTIME_ERROR", sub["run"]
    assert sub["run"]["status"] == "NONZERO_EXIT" and sub["run"]["code"] == 2, sub["run"]
    assert "etc canary" not in sub["run"]["output"], sub["run"]


def test_plant_fifo_run_script_in_compile_stage(client, canaries):
    sub = _plant_in_compile(client, canaries, "fifo", run_limits={"wall_time_ms": 2000})
    # sh opens the FIFO in the box and waits for a writer: the wall limit ends it.
    assert verdict(sub) == WALL_LIMIT_VERDICT, sub["run"]


def test_plant_symlinks_with_cutor_run(tmp_path, canaries):
    """`cutor run`: its workspace lives in TMPDIR; after the run it is gone, links unfollowed."""
    d = tmp_path / "plant"
    (d / "src").mkdir(parents=True)
    (d / "run.sh").write_text(
        f'sh plant.sh symlink "{canaries["tmp"].path}" "{canaries["dir"].path}"\n')
    (d / "plant.sh").write_text(program("plant.sh"))
    for name, content in PLANT_FILES.items():
        (d / name).write_text(content)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    r = subprocess.run([cutor_bin(), "run", str(d)], capture_output=True, timeout=scaled(120),
                       env=env)
    assert sanitizer_report(r.stderr.decode("utf-8", "replace")) is None, r.stderr
    assert r.returncode == 0, (r.returncode, r.stderr, r.stdout[-2000:])
    sub = json.loads(r.stdout)
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"].endswith("planted\n"), sub["run"]
    assert os.listdir(tmpdir) == [], f"cutor run left {os.listdir(tmpdir)}"
    assert sorted(os.listdir(d)) == sorted(["run.sh", "plant.sh", "main.c", "src"]), os.listdir(d)


# --- cutor.nix: evaluated and built on the host --------------------------------------------


def nix_program(name, **values):
    text = program(name)
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    assert "@" not in text.replace("${", ""), text
    return text


def test_nix_evaluation_cannot_read_host_secret(client, canaries):
    nix = nix_program("nix_read_secret.nix", SECRET=canaries["secret"].path)
    sub = client.run(submission({"cutor.nix": nix, "run.sh": "echo ran"}))
    assert sub["result"] == "ENVIRONMENT_ERROR", sub["environment"]
    assert sub["environment"]["status"] == "NONZERO_EXIT", sub["environment"]
    assert "forbidden in restricted mode" in sub["environment"]["output"], sub["environment"]
    assert "TOPSECRET" not in json.dumps(sub)
    assert sub["run"]["status"] == "SKIPPED", sub["run"]


def test_nix_build_cannot_read_host_files(server, client, canaries):
    nix = nix_program("nix_builder_reads.nix", SECRET=canaries["secret"].path,
                      ETC_CANARY=canaries["etc"].path, DATA_DIR=os.path.realpath(server.data_dir),
                      NONCE=secrets.token_hex(8))
    sub = client.run(submission({"cutor.nix": nix, "run.sh": 'cat "$LEAK"'}),
                     timeout=180)
    assert sub["environment"]["status"] == "OK", sub["environment"]
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    out = sub["run"]["stdout"]
    assert out.endswith("built\n") and out.count("No such file or directory") == 3, out
    assert "TOPSECRET" not in out and "etc canary" not in out and "SQLite" not in out, out


def test_nix_fixed_output_build_cannot_reach_host_network(client):
    listeners = HostListeners()
    try:
        nix = nix_program("nix_fod_network.nix", PORT=listeners.tcp4, NONCE=secrets.token_hex(8))
        sub = client.run(submission({"cutor.nix": nix, "run.sh": "echo ran"}), timeout=180)
        time.sleep(0.3)
    finally:
        listeners.close()
    assert listeners.received == [], (
        f"a Nix build reached the host's loopback: {listeners.received}")
    assert sub["result"] in ("OK", "ENVIRONMENT_ERROR"), sub


def test_nix_evaluation_cannot_read_the_servers_environment(client):
    nix = nix_program("nix_getenv.nix", VAR=SERVER_SECRET_ENV, NONCE=secrets.token_hex(8))
    run_sh = 'echo "[$FROM_SERVER][$FROM_SERVER_HOME]"'
    sub = client.run(submission({"cutor.nix": nix, "run.sh": run_sh}), timeout=180)
    assert verdict(sub) == ("OK", "OK", 0, None), (sub["environment"], sub["run"])
    assert SERVER_SECRET not in json.dumps(sub), "the server's environment reached the box via Nix"
    assert sub["run"]["stdout"].startswith("[]["), sub["run"]["stdout"]


def test_submission_env_cannot_reconfigure_host_nix(server, client, canaries):
    """NIX_CONFIG / NIX_PATH in the submission's env are for the box, never for the host's
    Nix: the build sandbox stays on."""
    nix = nix_program("nix_builder_reads.nix", SECRET=canaries["secret"].path,
                      ETC_CANARY=canaries["etc"].path, DATA_DIR=os.path.realpath(server.data_dir),
                      NONCE=secrets.token_hex(8))
    env = {"NIX_CONFIG": "sandbox = false\nrestrict-eval = false", "NIX_PATH": "nixpkgs=/root",
           "NIX_REMOTE": "local?root=/", "HOME": "/root"}
    sub = client.run(submission({"cutor.nix": nix, "run.sh": 'cat "$LEAK"'}, env=env), timeout=180)
    assert sub["environment"]["status"] == "OK", sub["environment"]
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    out = sub["run"]["stdout"]
    assert out.endswith("built\n") and out.count("No such file or directory") == 3, out
    assert "TOPSECRET" not in out and "etc canary" not in out, out


def test_nix_store_does_not_show_other_submissions_environments(client):
    key = "tenant-a-key-" + secrets.token_hex(8)
    a = client.run(submission({"cutor.nix": nix_program("nix_tenant_a.nix", KEY=key),
                               "run.sh": 'echo "$API_KEY"'}), timeout=180)
    assert verdict(a) == ("OK", "OK", 0, None) and a["run"]["stdout"] == key + "\n", a["run"]
    other = nix_program("nix_tenant_b.nix", NONCE=secrets.token_hex(8))
    b = client.run(submission({"cutor.nix": other, "run.sh": program("grep_store.sh")},
                              args=[key],
                              limits={"run": {"wall_time_ms": 60000, "cpu_time_ms": 30000}}),
                   timeout=180)
    assert verdict(b) == ("OK", "OK", 0, None), b["run"]
    out = b["run"]["stdout"]
    assert out.endswith("searched\n"), out
    assert "FOUND" not in out, f"tenant A's value is visible to tenant B's box:\n{out}"


def test_nix_evaluation_memory_bomb_is_limited(client):
    nix = nix_program("nix_eval_bomb.nix", NONCE=secrets.token_hex(8))
    sub = client.run(submission(
        {"cutor.nix": nix, "run.sh": 'echo "$N"'},
        limits={"environment": {"memory_bytes": 128 * MIB, "wall_time_ms": 60000}}), timeout=180)
    assert sub["result"] == "ENVIRONMENT_ERROR", sub["environment"]
    assert sub["environment"]["status"] == "MEMORY_LIMIT_EXCEEDED", sub["environment"]
    assert sub["run"]["status"] == "SKIPPED", sub["run"]


@pytest.mark.parametrize("name", ["nix_searchpath_escape.nix", "nix_readdir_host.nix",
                                  "nix_import_host.nix"])
def test_nix_evaluation_cannot_reach_host_paths(name, server, client, canaries):
    nix = nix_program(name, SECRET=canaries["secret"].path, DIR=os.path.realpath(server.data_dir),
                      ETC_CANARY=canaries["etc"].path)
    sub = client.run(submission({"cutor.nix": nix, "run.sh": "echo ran"}))
    assert sub["result"] == "ENVIRONMENT_ERROR", sub["environment"]
    out = sub["environment"]["output"]
    assert "forbidden in restricted mode" in out, out
    assert "TOPSECRET" not in out and "etc canary" not in out and "cutor.db" not in out, out


def test_plants_then_server_crash_and_recovery(make_server, canaries):
    """The run stage plants links and FIFOs, then the server is killed -9 mid-stage: on
    restart the leftover workspace (still mounted) is removed without following anything,
    and the submission runs again and finishes."""
    srv = make_server(["--workers", "1"])
    files = {"run.sh": 'sh plant.sh "$@"; sleep 30', "plant.sh": program("plant.sh"), **PLANT_FILES}
    sid = srv.client.submit(submission(
        files, args=["symlink", canaries["etc"].path, canaries["dir"].path],
        limits={"run": {"wall_time_ms": 3000}}))["id"]
    srv.client.poll_until(sid, lambda s: s["status"] == "RUNNING", timeout=60)
    time.sleep(0.5)  # let the plants be made (the check below does not depend on it)
    srv.kill9()
    leftover = srv.mounts_below_data_dir()
    srv.start()
    sub = srv.client.wait_finished(sid, timeout=120)
    assert verdict(sub) == WALL_LIMIT_VERDICT, sub["run"]
    assert sub["run"]["stdout"].endswith("planted\n"), sub["run"]
    wait_until(lambda: not srv.mounts_below_data_dir(), timeout=10,
               what=f"the leftover workspace mounts {leftover} to be gone")
    after = srv.client.run(submission({"run.sh": "echo fine"}))
    assert after["result"] == "OK" and after["run"]["stdout"] == "fine\n", after


def test_workspace_locked_by_the_program_is_not_an_internal_error(client):
    sub = client.run(submission({"compile.sh": program("lock_workspace.sh"), "run.sh": "echo hi"}))
    assert sub["compile"]["status"] == "OK", sub["compile"]
    assert sub["compile"]["stdout"] == "locked\n", sub["compile"]
    assert sub["result"] == "RUNTIME_ERROR", sub["run"]
    assert sub["run"]["status"] in ("NONZERO_EXIT", "SIGNALED"), sub["run"]
    after = client.run(submission({"run.sh": "echo fine"}))
    assert after["result"] == "OK" and after["run"]["stdout"] == "fine\n", after


def test_host_guard_detects_what_it_looks_for(request, server, tmp_path):
    """The host checks above can fail: a box-uid process below no cutor, a file of a box uid
    in /tmp, a canary read and a canary written are each seen."""
    stray = subprocess.Popen(["setpriv", "--reuid=60999", "--regid=60999", "--clear-groups",
                              "sleep", "30"])
    request.node.host_guard_ignore.add(stray.pid)
    owned = f"/tmp/cutor-adv-guard-{secrets.token_hex(4)}"
    try:
        wait_until(lambda: stray.pid in box_processes(), timeout=5, what="the stray to run")
        assert stray.pid in [p for p, _ in leaked_box_processes(server.proc.pid)]
        before = box_owned_files()
        with open(owned, "w"):
            pass
        os.chown(owned, 60999, 60999)
        assert box_owned_files() - before == {owned}
        canary = Canary(str(tmp_path / "guard-canary"), "guard canary")
        with open(canary.path) as f:
            f.read()
        with pytest.raises(AssertionError):
            canary.check()
        canary = Canary(str(tmp_path / "guard-canary-2"), "guard canary")
        with open(canary.path, "a") as f:
            f.write("x")
        with pytest.raises(AssertionError):
            canary.check()
    finally:
        stray.kill()
        stray.wait()
        if os.path.exists(owned):
            os.unlink(owned)


def test_personality_flags_cannot_be_smuggled_past_the_filter(client):
    sub = run_c(client, "personality_bypass.c")
    assert_all_refused(sub, {
        "plain ADDR_NO_RANDOMIZE": "EPERM", "ADDR_NO_RANDOMIZE with top bit": "EPERM",
        "READ_IMPLIES_EXEC with top bit": "EPERM", "ADDR_COMPAT_LAYOUT with top bit": "EPERM",
    })


def test_nix_builder_daemon_does_not_outlive_the_build(client):
    marker = "7311." + secrets.token_hex(3)
    nix = nix_program("nix_builder_daemon.nix", NONCE=secrets.token_hex(8), MARKER=marker)
    sub = client.run(submission({"cutor.nix": nix, "run.sh": 'cat "$DAEMON"'}), timeout=180)
    assert sub["environment"]["status"] == "OK", sub["environment"]
    assert verdict(sub) == ("OK", "OK", 0, None), sub["run"]
    assert sub["run"]["stdout"] == "daemon-running\n", sub["run"]
    wait_until(lambda: not processes_with_marker(marker), timeout=10,
               what="the builder's daemon to be gone")


def test_nix_import_from_derivation_refused(client):
    nix = nix_program("nix_ifd.nix", NONCE=secrets.token_hex(8))
    sub = client.run(submission({"cutor.nix": nix, "run.sh": "echo ran"}), timeout=180)
    assert sub["result"] == "ENVIRONMENT_ERROR", sub["environment"]
    out = sub["environment"]["output"]
    assert "allow-import-from-derivation" in out and "ifd ran" not in out, out
