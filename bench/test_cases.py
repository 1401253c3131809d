#!/usr/bin/env python3
"""Test cases (issue 14): one submission with N tests of a C program against N separate
submissions, and the per-test overhead over the program itself.

Usage: bench/test_cases.py [--cutor BIN] [--tests N]
  --cutor BIN  the cutor binary (default: build/release/src/cli/cutor)
  --tests N    tests per submission and separate submissions (default 100)

Starts `cutor serve` on a free 127.0.0.1 port with a temporary data directory, measures,
prints a table, stops the server and removes what it made. CPU is the whole machine's
(/proc/stat busy time) during each phase: run it on an otherwise quiet host.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADD_C = r"""#include <stdio.h>
int main(void) { long a, b; if (scanf("%ld %ld", &a, &b) != 2) return 3; printf("%ld\n", a + b); return 0; }
"""
FILES = [
    {"name": "compile.sh", "content": "gcc -O1 -o prog main.c\n"},
    {"name": "run.sh", "content": "./prog\n"},
    {"name": "main.c", "content": ADD_C},
]


def busy_seconds():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def post(port, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/api/v1/submissions?wait=true", json.dumps(body),
                  {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = json.loads(r.read())
    conn.close()
    if r.status != 200 or data.get("status") != "FINISHED":
        raise SystemExit(f"bench: unexpected answer {r.status}: {str(data)[:300]}")
    return data


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_run_ms(n):
    """The program alone: fork+exec of ./prog with its stdin, p50 over n runs."""
    work = tempfile.mkdtemp(prefix="cutor-bench-bare-")
    try:
        with open(os.path.join(work, "main.c"), "w") as f:
            f.write(ADD_C)
        subprocess.run(["gcc", "-O1", "-o", "prog", "main.c"], cwd=work, check=True)
        times = []
        for i in range(n):
            start = time.perf_counter()
            subprocess.run(["./prog"], cwd=work, input=f"{i} 1\n".encode(), check=True,
                           stdout=subprocess.DEVNULL)
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)
    finally:
        shutil.rmtree(work)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cutor", default=os.path.join(ROOT, "build/release/src/cli/cutor"))
    ap.add_argument("--tests", type=int, default=100)
    a = ap.parse_args()
    n = a.tests
    data = tempfile.mkdtemp(prefix="cutor-bench-tests-")
    port = free_port()
    log = open(os.path.join(data, "server.log"), "w")
    server = subprocess.Popen(
        [a.cutor, "serve", "--listen", f"127.0.0.1:{port}", "--data", os.path.join(data, "d"),
         "--workers", str(os.cpu_count()), "--max-tests", str(max(n, 1000)), "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/api/v1/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("bench: the server did not start")
        one = {"files": FILES, "stdin": "1 2\n"}
        post(port, one)  # warm up: page cache, prepared boxes

        tests = [{"stdin": f"{i} {i}\n", "expected_output": f"{2 * i}\n"} for i in range(n)]
        cpu0, t0 = busy_seconds(), time.perf_counter()
        sub = post(port, {"files": FILES, "tests": tests})
        wall_tests, cpu_tests = time.perf_counter() - t0, busy_seconds() - cpu0
        assert sub["result"] == "ACCEPTED", sub["result"]
        compile_s = sub["compile"]["time"]

        cpu0, t0 = busy_seconds(), time.perf_counter()
        for i in range(n):
            r = post(port, {"files": FILES, "stdin": f"{i} {i}\n"})
            assert r["run"]["stdout"] == f"{2 * i}\n", r["run"]
        wall_sep, cpu_sep = time.perf_counter() - t0, busy_seconds() - cpu0

        bare = bare_run_ms(n)
        per_test = (wall_tests - compile_s) / n * 1000
        print(f"machine: {os.cpu_count()} cores, kernel {os.uname().release}, "
              f"load before {open('/proc/loadavg').read().split()[0]}")
        print(f"| measurement | wall | cpu (machine) |")
        print(f"| --- | --- | --- |")
        print(f"| 1 submission, {n} tests (compile once) | {wall_tests:.2f} s | {cpu_tests:.2f} s |")
        print(f"| {n} submissions, compile + run each, sequential | {wall_sep:.2f} s | {cpu_sep:.2f} s |")
        print(f"| compile stage of the test submission | {compile_s * 1000:.1f} ms | |")
        print(f"| per test: (wall - compile) / {n} | {per_test:.2f} ms | {cpu_tests / n * 1000:.2f} ms |")
        print(f"| the program alone, fork+exec from Python, p50 | {bare:.2f} ms | |")
        print(f"| per-test overhead over the program (goal < 1 ms) | {per_test - bare:.2f} ms | |")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
