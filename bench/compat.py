#!/usr/bin/env python3
"""Compat APIs (issue 15): POST /api/v2/execute (Piston) against the same program through
POST /api/v1/submissions?wait=true with "runtime", for bash `echo hi` and python `print(1)`:
p50 latency of one client, then throughput with 16 clients, in the same run.

Usage: bench/compat.py [--cutor BIN] [--seconds S] [--clients N]
Starts `cutor serve` on a free 127.0.0.1 port with the test channel's runtimes
(tests/runtimes over tests/nixpkgs, offline) and a temporary data directory, prints a
Markdown table, stops the server and removes what it made. Run it on a quiet host.
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
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = {"bash": ("main.sh", "echo hi\n", "hi\n"), "python": ("main.py", "print(1)\n", "1\n")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(conn, path, body):
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def one(conn, api, lang):
    name, code, want = PROGRAMS[lang]
    if api == "v2":
        status, d = request(conn, "/api/v2/execute", {"language": lang, "version": "*",
                                                     "files": [{"content": code}]})
        ok = status == 200 and d["run"]["stdout"] == want
    else:
        status, d = request(conn, "/api/v1/submissions?wait=true",
                            {"runtime": lang, "files": [{"name": name, "content": code}]})
        ok = status == 200 and d.get("result") == "OK" and d["run"]["stdout"] == want
    if not ok:
        raise SystemExit(f"bench: unexpected answer {status}: {str(d)[:300]}")


def measure(port, api, lang, clients, seconds):
    times, lock = [], threading.Lock()
    end = time.perf_counter() + seconds

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine = []
        while time.perf_counter() < end:
            start = time.perf_counter()
            one(conn, api, lang)
            mine.append((time.perf_counter() - start) * 1000)
        conn.close()
        with lock:
            times.extend(mine)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statistics.median(times), len(times) / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cutor", default=os.path.join(ROOT, "build/release/src/cli/cutor"))
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=16)
    a = ap.parse_args()
    port, data = free_port(), tempfile.mkdtemp(prefix="cutor-bench-compat-")
    log = open(os.path.join(data, "server.log"), "w")
    server = subprocess.Popen(
        [a.cutor, "serve", "--listen", f"127.0.0.1:{port}", "--data", os.path.join(data, "d"),
         "--workers", str(os.cpu_count()), "--log-level", "warn",
         "--nix-path", f"nixpkgs={os.path.join(ROOT, 'tests', 'nixpkgs')}", "--substituters", "",
         "--runtimes", os.path.join(ROOT, "tests", "runtimes")], stdout=log, stderr=log)
    try:
        deadline = time.time() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/api/v1/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("bench: the server did not start")
            time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for lang in PROGRAMS:  # build each environment once, outside the figures
            one(conn, "v1", lang)
        conn.close()
        print(f"| program | API | p50 ms (1 client) | p50 ms ({a.clients} clients) | runs/s "
              f"({a.clients} clients) |")
        print("| --- | --- | --- | --- | --- |")
        for lang in PROGRAMS:
            for api in ("v2", "v1"):
                p50_one, _ = measure(port, api, lang, 1, a.seconds / 2)
                p50_many, rate = measure(port, api, lang, a.clients, a.seconds)
                path = "/api/v2/execute" if api == "v2" else "/api/v1 ?wait=true"
                print(f"| {lang} `{PROGRAMS[lang][1].strip()}` | {path} | {p50_one:.1f} | "
                      f"{p50_many:.1f} | {rate:.0f} |")
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
    main()
