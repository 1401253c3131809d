"""`cutor run DIR` and `cutor doctor`: SPEC §5.

`cutor run` prints the submission as JSON and exits with the run stage's code,
128+N when signal N ended it, 125 when the run stage did not start.
"""

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import assert_submission_shape, require_binary, sanitizer_report, scaled

CLI_TIMEOUT_S = scaled(120)


def cli_env(tmp_path):
    # Keep `cutor run`'s environment cache out of the invoking user's home.
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")
    return env


def assert_no_sanitizer_report(proc):
    """A sanitizer build's report on stderr fails the test, whatever the exit code."""
    report = sanitizer_report(proc.stderr.decode("utf-8", "replace"))
    assert report is None, f"sanitizer report from {proc.args[:2]}:\n{report}"


def write_tree(root, files):
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def cutor_run(tmp_path, files, extra=(), stdin_bytes=None):
    binary = require_binary()
    src = write_tree(tmp_path / "program", files)
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    proc = subprocess.run(
        [binary, "run", str(src), *extra],
        cwd=cwd,
        env=cli_env(tmp_path),
        input=stdin_bytes if stdin_bytes is not None else b"",
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert_no_sanitizer_report(proc)
    try:
        sub = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(
            f"cutor run printed no JSON (exit {proc.returncode}); stdout: {proc.stdout[:2000]!r}"
            f"; stderr: {proc.stderr[-2000:]!r}"
        )
    return proc, sub


def test_run_prints_json_and_exits_0(tmp_path):
    proc, sub = cutor_run(tmp_path, {"run.sh": "python3 main.py", "main.py": "print('hi')"})
    assert proc.returncode == 0, proc.stderr
    assert_submission_shape(sub)
    assert sub["status"] == "FINISHED" and sub["result"] == "OK", sub
    assert sub["run"]["stdout"] == "hi\n"


def test_concurrent_runs_all_start(tmp_path):
    """Quick `cutor run`s, four at a time: each ends OK, none waits out its wall limit.

    Each box is forked while another thread of the process (the network namespace pool)
    may be inside malloc. Under ASan a box child that allocates after fork could block for
    good on an allocator lock held at fork time (glibc resets its own locks in the child;
    GCC 12's ASan does not), and the stage then ended TIME_LIMIT_EXCEEDED after 10 s with
    no cpu used: about 0.6% of runs. 40 runs here, 400 with CUTOR_LONG=1.
    """
    runs = 400 if os.environ.get("CUTOR_LONG") == "1" else 40

    def one(i):
        return cutor_run(tmp_path / f"r{i}", {"run.sh": f"echo run-{i}"})

    for i in range(runs):
        (tmp_path / f"r{i}").mkdir()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(runs)))
    stuck = [
        (i, sub["result"], run["status"], run["cpu_time_ms"], run["wall_time_ms"])
        for i, (proc, sub) in enumerate(results)
        for run in [sub["run"]]
        if proc.returncode != 0 or sub["result"] != "OK" or run["stdout"] != f"run-{i}\n"
    ]
    assert not stuck, (
        f"{len(stuck)} of {runs} runs did not end OK (i, result, status, cpu ms, wall ms): {stuck}"
    )


def test_run_exit_code_is_the_run_stage_code(tmp_path):
    proc, sub = cutor_run(tmp_path, {"run.sh": "echo out; exit 3"})
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert sub["result"] == "RUNTIME_ERROR" and sub["run"]["code"] == 3, sub
    assert sub["run"]["stdout"] == "out\n"


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGTERM])
def test_run_signal_is_128_plus_n(tmp_path, sig):
    proc, sub = cutor_run(tmp_path, {"run.sh": f"kill -{sig.name[3:]} $$"})
    assert proc.returncode == 128 + sig.value, (proc.returncode, proc.stderr)
    assert sub["run"]["signal"] == sig.name and sub["run"]["code"] is None, sub["run"]


def test_run_abort_is_134(tmp_path):
    proc, sub = cutor_run(
        tmp_path,
        {
            "compile.sh": "gcc -o a a.c",
            # exec: the program itself is the run stage's process (without it, sh
            # reports the child's abort as exit code 134 and is not signalled).
            "run.sh": "exec ./a",
            "a.c": "#include <stdlib.h>\nint main(void){abort();}\n",
        },
    )
    assert proc.returncode == 128 + signal.SIGABRT, (proc.returncode, sub["run"])
    assert sub["run"]["signal"] == "SIGABRT", sub["run"]


def test_run_compile_error_is_125(tmp_path):
    proc, sub = cutor_run(
        tmp_path, {"compile.sh": "gcc -o b b.c", "run.sh": "./b", "b.c": "not C at all"}
    )
    assert proc.returncode == 125, (proc.returncode, proc.stderr)
    assert sub["result"] == "COMPILE_ERROR", sub
    assert sub["run"]["status"] == "SKIPPED", sub["run"]


def test_run_stdin_file(tmp_path):
    data = "línea uno\nline two without newline".encode()
    stdin_file = tmp_path / "input.txt"
    stdin_file.write_bytes(data)
    proc, sub = cutor_run(tmp_path, {"run.sh": "cat"}, extra=["--stdin", str(stdin_file)])
    assert proc.returncode == 0, proc.stderr
    assert sub["run"]["stdout"] == data.decode()


def test_run_args_after_double_dash(tmp_path):
    args = ["a b", "--stdin", "it's", "", "-x"]
    proc, sub = cutor_run(
        tmp_path,
        {"run.sh": 'python3 argv.py "$@"', "argv.py": "import sys,json\nprint(json.dumps(sys.argv[1:]))"},
        extra=["--", *args],
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(sub["run"]["stdout"]) == args


def test_run_nested_and_binary_files(tmp_path):
    blob = bytes(range(256))
    proc, sub = cutor_run(
        tmp_path,
        {
            "run.sh": "od -An -tx1 lib/data.bin | tr -s ' \\n' ' '; cat lib/deep/x.txt",
            "lib/data.bin": blob,
            "lib/deep/x.txt": "x\n",
        },
    )
    assert proc.returncode == 0, proc.stderr
    out = sub["run"]["stdout"]
    assert out.split()[:-1] == [f"{b:02x}" for b in blob] and out.endswith("x\n"), out


def test_run_without_run_sh_fails_without_running(tmp_path):
    binary = require_binary()
    src = write_tree(tmp_path / "program", {"main.py": "print(1)"})
    proc = subprocess.run(
        [binary, "run", str(src)],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert_no_sanitizer_report(proc)
    assert proc.returncode != 0, proc
    assert b"run.sh" in proc.stderr + proc.stdout, proc


def test_doctor_reports(tmp_path):
    binary = require_binary()
    proc = subprocess.run(
        [binary, "doctor"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert_no_sanitizer_report(proc)
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert text.strip(), "cutor doctor printed nothing"
    assert proc.returncode >= 0, f"cutor doctor died of signal {-proc.returncode}: {text}"
    assert any(w in text.lower() for w in ("cgroup", "namespace", "seccomp")), text


def listening_addresses(port):
    """Local addresses in LISTEN state on `port`, from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            addr, port_hex = cols[1].split(":")
            if int(port_hex, 16) == port and cols[3] == "0A":
                found.append(addr)
    return found


def test_serve_binds_only_where_listen_says(make_server):
    srv = make_server(["--workers", "1"])
    addrs = listening_addresses(srv.port)
    assert addrs == ["0100007F"], f"listening on {addrs} (hex, little-endian), not 127.0.0.1"


def test_serve_json_logs_are_json_lines(make_server):
    srv = make_server(["--workers", "1", "--log-format", "json"])
    sub = srv.client.run({"files": [{"name": "run.sh", "content": "echo hi"}]})
    assert sub["result"] == "OK", sub
    srv.stop()
    # Either stream may carry the log; every line on both must be a JSON object.
    lines = [ln for ln in srv.log_text().splitlines() if ln.strip()]
    assert lines, "no log lines at all"
    for ln in lines:
        assert isinstance(json.loads(ln), dict), ln


def box_inits_below(pid):
    """Box inits (comm cutor-box-init) among the children of process `pid`."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = f.read().split()
        except OSError:
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/comm") as f:
                    if f.read().strip() == "cutor-box-init":
                        found.append(int(kid))
            except OSError:
                pass
    return found


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.mark.parametrize("prepared", [0, 2])
def test_serve_prepared_boxes(make_server, prepared):
    """--prepared-boxes N keeps N boxes built ahead while stages run (0: none), and drops
    them when the server is idle; runs are the same either way."""
    srv = make_server(["--workers", "1", "--prepared-boxes", str(prepared)])
    for i in range(3):
        sub = srv.client.run({"files": [{"name": "run.sh", "content": f"echo run-{i}"}]})
        assert sub["result"] == "OK" and sub["run"]["stdout"] == f"run-{i}\n", sub
    pid = srv.proc.pid
    if prepared:
        assert wait_for(lambda: len(box_inits_below(pid)) == prepared, scaled(5)), \
            f"{box_inits_below(pid)} box inits ready after runs, expected {prepared}"
    # With 0 the only inits are those of finished stages, still being torn down after the
    # answer (a process alone cannot tell them from ready ones; the unit test
    # SandboxPoolTest.WithoutPreparedBoxesNothingWaits checks that nothing is built ahead).
    # Idle: the ready boxes are dropped (0.5 s after the last take).
    assert wait_for(lambda: box_inits_below(pid) == [], scaled(5)), \
        f"box inits still there when idle: {box_inits_below(pid)}"


def test_serve_refuses_too_many_prepared_boxes(tmp_path):
    proc = subprocess.run([require_binary(), "serve", "--data", str(tmp_path / "d"),
                           "--prepared-boxes", "65", "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=scaled(30))
    assert proc.returncode != 0
    assert "--prepared-boxes" in proc.stderr + proc.stdout
    assert not (tmp_path / "d" / "cutor.db").exists()
