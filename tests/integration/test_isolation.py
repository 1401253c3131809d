"""What untrusted code in a stage can and cannot do: SPEC §6, seen from the outside.

Network probes go only to loopback: the box has its own network namespace, so the
server's own port on 127.0.0.1 must be unreachable from inside it.
"""

import os

from helpers import processes_with_marker, submission, wait_until


def run_ok(client, files, **extra):
    sub = client.run(submission(files, **extra))
    assert sub["result"] == "OK", sub
    return sub["run"]["stdout"]


def test_runs_as_an_unprivileged_uid(client):
    out = run_ok(client, {"run.sh": "id -u; id -g"})
    uid, gid = (int(x) for x in out.split())
    assert uid != 0 and gid != 0, out


def test_cannot_reach_the_hosts_loopback(server, client):
    probe = (
        "import socket, sys\n"
        "s = socket.socket(); s.settimeout(3)\n"
        "try:\n"
        "    s.connect(('127.0.0.1', int(sys.argv[1]))); print('connected')\n"
        "except OSError as e:\n"
        "    print('refused', type(e).__name__)\n"
    )
    out = run_ok(
        client, {"run.sh": 'python3 probe.py "$@"', "probe.py": probe}, args=[str(server.port)]
    )
    assert out.startswith("refused"), out


def test_only_loopback_interface_exists(client):
    out = run_ok(client, {"run.sh": "ls /sys/class/net 2>/dev/null || cat /proc/net/dev"})
    assert "eth" not in out and "ens" not in out and "wl" not in out, out


def test_cannot_see_host_files_or_the_data_dir(server, client):
    host_file = os.path.join(server.log_dir, "host-secret.txt")
    with open(host_file, "w") as f:
        f.write("host secret\n")
    script = (
        'for p in "$@"; do if cat "$p" >/dev/null 2>&1 || ls "$p" >/dev/null 2>&1; '
        'then echo "visible $p"; fi; done; echo checked'
    )
    out = run_ok(
        client,
        {"run.sh": script},
        args=[host_file, server.data_dir, os.path.realpath(server.data_dir), "/root", "/etc/shadow"],
    )
    assert out == "checked\n", out


def test_cannot_write_outside_the_workspace(client):
    script = (
        "for p in /usr/cutor-x /etc/cutor-x /bin/cutor-x /cutor-x; do "
        'if (echo x > "$p") 2>/dev/null; then echo "wrote $p"; fi; done; '
        "echo ok > here.txt && echo ok > /tmp/t.txt && cat here.txt /tmp/t.txt"
    )
    out = run_ok(client, {"run.sh": script})
    assert out == "ok\nok\n", out
    for p in ("/usr/cutor-x", "/etc/cutor-x", "/bin/cutor-x", "/cutor-x"):
        assert not os.path.exists(p), f"the box wrote {p} on the host"


def test_own_pid_namespace(client):
    out = run_ok(client, {"run.sh": "ls /proc | grep -c '^[0-9]'; echo $$"})
    count, _ = out.split()
    assert int(count) < 10, f"the box sees {count} processes"


def test_submissions_cannot_see_each_other(client):
    marker = "cutor-peer-secret-4711"
    peer = client.submit(
        submission({"run.sh": "sleep 3", "secret.txt": marker},
                   limits={"run": {"wall_time_ms": 20000}})
    )["id"]
    client.poll_until(peer, lambda s: s["status"] == "RUNNING", timeout=30)
    out = run_ok(
        client,
        # Everything but the read-only host base system and the kernel's views.
        {"run.sh": f"grep -rsl {marker} / --exclude-dir=proc --exclude-dir=sys "
                   "--exclude-dir=dev --exclude-dir=usr --exclude-dir=nix "
                   "--exclude-dir='lib*' --exclude-dir=bin --exclude-dir=sbin; echo done",
         "own.txt": marker},
        limits={"run": {"wall_time_ms": 30000, "cpu_time_ms": 20000}},
    )
    # The searching script names the marker itself: its own run.sh may match.
    lines = [ln for ln in out.splitlines() if ln != "done" and not ln.endswith("/run.sh")]
    # The search does reach files: it finds this submission's own copy, and only that.
    assert len(lines) == 1 and lines[0].endswith("/own.txt"), (
        f"expected only this submission's own.txt, found: {lines}"
    )
    client.wait_finished(peer)


def test_process_limit(client):
    forker = (
        "import os, time\n"
        "pids = []\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        p = os.fork()\n"
        "        if p == 0:\n"
        "            time.sleep(5); os._exit(0)\n"
        "        pids.append(p)\n"
        "except OSError:\n"
        "    pass\n"
        "print(len(pids), flush=True)\n"
        "for p in pids: os.kill(p, 9)\n"
    )
    sub = client.run(
        submission({"run.sh": "python3 fork.py", "fork.py": forker},
                   limits={"run": {"processes": 10}})
    )
    assert sub["run"]["stdout"].strip().isdigit(), sub
    assert int(sub["run"]["stdout"]) < 10, sub["run"]


def test_file_size_limit(client):
    sub = client.run(
        submission(
            {"run.sh": "head -c 2000000 /dev/zero > big 2>/dev/null; wc -c < big"},
            limits={"run": {"file_size_bytes": 1000000}},
        )
    )
    assert int(sub["run"]["stdout"].strip()) <= 1000000, sub["run"]


def test_stage_end_kills_daemonised_children(client):
    marker = "31.7" + str(os.getpid())
    sub = client.run(
        submission({"run.sh": f"setsid sleep {marker} > /dev/null 2>&1 < /dev/null & echo spawned"})
    )
    assert sub["result"] == "OK" and sub["run"]["stdout"] == "spawned\n", sub
    wait_until(
        lambda: not processes_with_marker(f"sleep {marker}"),
        timeout=5,
        what="a daemonised child to be killed when its stage ended",
    )


def test_a_later_box_sees_nothing_of_an_earlier_ones_network(client):
    # Network namespaces are lent again only when nothing of their last box is left in them
    # (src/sandbox/net.h). The first box leaves a TIME_WAIT socket and moved counters on
    # port 7777 of its lo; every later box must find its lo untouched: no packets counted,
    # and the port free to bind without SO_REUSEADDR (a TIME_WAIT entry would refuse it).
    leave = (
        "import socket\n"
        "srv = socket.socket(); srv.bind(('127.0.0.1', 7777)); srv.listen(1)\n"
        "cli = socket.create_connection(('127.0.0.1', 7777))\n"
        "conn, _ = srv.accept(); conn.close()\n"  # the side that closes first keeps TIME_WAIT
        "cli.close(); srv.close(); print('left')\n"
    )
    assert run_ok(client, {"run.sh": "python3 leave.py", "leave.py": leave}) == "left\n"
    look = (
        "import socket\n"
        "lo = [l.split() for l in open('/proc/net/dev') if l.strip().startswith('lo:')][0]\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 7777))\n"
        "print('rx', lo[2], 'tx', lo[10])\n"
    )
    # More later boxes than the pool keeps namespaces ready, run one after another.
    for _ in range(12):
        out = run_ok(client, {"run.sh": "python3 look.py", "look.py": look})
        assert out == "rx 0 tx 0\n", out


def test_a_stages_program_runs_as_any_process_and_its_init_as_stage_work(server, client):
    # Through the real server: the program (here cut and grep) at the server's nice as
    # SCHED_OTHER (policy 0) with the kernel's default slice, so no submission can starve
    # or out-wait another; the box's init, whose wake-ups a stage waits for, with the
    # shortest slice where the kernel takes one (Linux 6.12 on), never at background nice.
    server_nice = open(f"/proc/{server.proc.pid}/stat").read().rsplit(")", 1)[1].split()[16]
    out = run_ok(
        client,
        {
            "run.sh": "cut -d' ' -f19,41 /proc/self/stat /proc/1/stat; "
            "grep -h '^se.slice' /proc/self/sched /proc/1/sched | tr -s ' ' | cut -d' ' -f3"
        },
    )
    with open("/proc/self/sched") as own:
        default_slice = next(l for l in own if l.startswith("se.slice")).split()[-1]
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    init_slice = "100000" if (major, minor) >= (6, 12) else default_slice
    assert out.split("\n") == [
        f"{server_nice} 0",
        f"{server_nice} 0",
        default_slice,
        init_slice,
        "",
    ], out
