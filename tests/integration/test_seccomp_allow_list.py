"""The box's seccomp filter denies by default (docs/seccomp.md): its allow list must be
enough for what users run. Real programs of every language in the test channel (C, C++,
Python, shell; gcc, g++, as, ld, make) go through the real server, each asserting its
exact output and that nothing said "Function not implemented" or was refused."""

from helpers import submission

C_PROGRAM = r"""
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_alarm;
static void on_alarm(int sig) { (void)sig; got_alarm = 1; }
static void* square(void* arg) { long v = (long)arg; return (void*)(v * v); }

int main(void) {
  pthread_t t[4];
  long sum = 0;
  for (long i = 0; i < 4; ++i) pthread_create(&t[i], NULL, square, (void*)(i + 1));
  for (int i = 0; i < 4; ++i) { void* r; pthread_join(t[i], &r); sum += (long)r; }
  int fds[2];
  if (pipe(fds) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) { (void)!write(fds[1], "child", 5); _exit(7); }
  char buf[8] = {0};
  (void)!read(fds[0], buf, 5);
  int status;
  waitpid(pid, &status, 0);
  signal(SIGALRM, on_alarm);
  struct itimerval it = {{0, 0}, {0, 1000}};
  setitimer(ITIMER_REAL, &it, NULL);
  while (!got_alarm) pause();
  char* big = mmap(NULL, 1 << 24, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(big, 1, 1 << 24);
  big = mremap(big, 1 << 24, 1 << 25, MREMAP_MAYMOVE);
  FILE* f = tmpfile();
  fprintf(f, "%.3f", sqrt(2.0));
  rewind(f);
  char line[16] = {0};
  (void)!fgets(line, sizeof(line), f);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  printf("sum %ld, %s exited %d, alarm %d, mapped %d, sqrt %s\n", sum, buf, WEXITSTATUS(status),
         (int)got_alarm, big != MAP_FAILED, line);
  return 0;
}
"""

CXX_PROGRAM = r"""
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

int main() {
  std::vector<std::future<int>> parts;
  for (int i = 1; i <= 4; ++i) parts.push_back(std::async(std::launch::async, [i] { return i * 10; }));
  int total = 0;
  for (auto& p : parts) total += p.get();
  std::mutex m;
  std::map<std::string, int> counts;
  std::vector<std::jthread> threads;
  for (int i = 0; i < 3; ++i)
    threads.emplace_back([&, i] { std::lock_guard lock(m); counts["t" + std::to_string(i)] = i; });
  threads.clear();
  std::filesystem::create_directories("out/a/b");
  std::ofstream("out/a/b/f.txt") << "data";
  std::size_t files = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator("out")) files += e.is_regular_file();
  std::filesystem::remove_all("out");
  std::string caught;
  try { throw std::runtime_error("thrown"); } catch (const std::exception& e) { caught = e.what(); }
  std::mt19937 gen(std::random_device{}());
  std::vector<int> v(1000);
  std::iota(v.begin(), v.end(), 0);
  std::shuffle(v.begin(), v.end(), gen);
  std::sort(v.begin(), v.end());
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::cout << "total " << total << ", threads " << counts.size() << ", files " << files << ", "
            << caught << ", sorted " << std::is_sorted(v.begin(), v.end()) << std::endl;
}
"""

PY_PROGRAM = r"""
import asyncio, hashlib, json, multiprocessing, os, select, signal, socket, subprocess
import sys, tempfile, threading, time

def square(x):
    return x * x

async def echo_once():
    async def handle(reader, writer):
        writer.write(await reader.read(5))
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello")
    data = await reader.read(5)
    writer.close()
    server.close()
    await server.wait_closed()
    return data.decode()

if __name__ == "__main__":
    results = []
    t = threading.Thread(target=lambda: results.append(sum(range(10))))
    t.start(); t.join()
    with multiprocessing.Pool(2) as pool:
        squares = pool.map(square, range(5))
    sub = subprocess.run(["sh", "-c", "echo from-sh"], capture_output=True, text=True).stdout.strip()
    echoed = asyncio.run(echo_once())
    a, b = socket.socketpair()
    a.send(b"x")
    readable, _, _ = select.select([b], [], [], 5)
    six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    six.bind(("::1", 0)); six.close()
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "f.json"), "w") as f:
            json.dump({"k": 1}, f)
        with open(os.path.join(d, "f.json")) as f:
            loaded = json.load(f)
    signal.signal(signal.SIGUSR1, lambda *_: results.append("sig"))
    os.kill(os.getpid(), signal.SIGUSR1)
    time.sleep(0.001)
    digest = hashlib.sha256(b"cutor").hexdigest()[:8]
    print(results, squares, sub, echoed, len(readable), loaded, digest, os.cpu_count() > 0)
"""

SHELL_SCRIPT = r"""
set -eu
mkdir -p d/e && cd d
printf 'b\na\nc\n' > list
sort list | tr a-z A-Z | head -2 | tail -1
seq 1 5 | while read n; do echo "$((n * n))"; done | tail -1
x=$(cat list | wc -l); echo "lines $x"
( cd e && touch f && ln -s f g && readlink g && ls )
mkfifo p; (echo through-fifo > p &); cat p; rm p
sleep 0.01 & wait
grep -c . list; sed -n 2p list
cp list list2; mv list2 list3; chmod 600 list3; rm -r list3 e
echo "$(id -u) $(uname -s)" | sed 's/^[0-9]* //'
bash -c 'declare -A m=([k]=v); echo "bash ${m[k]} ${BASH_VERSINFO[0]}"'
"""

MAKEFILE = "prog: main.o util.o\n\tgcc -o prog main.o util.o\n%.o: %.c\n\tgcc -O2 -c $<\n"


def assert_clean_run(sub, stdout):
    assert sub["result"] == "OK", sub
    for stage in ("compile", "run"):
        if stage in sub and sub[stage]:
            assert "not implemented" not in sub[stage]["output"].lower(), sub[stage]
            assert "Operation not permitted" not in sub[stage]["output"], sub[stage]
    assert sub["run"]["stdout"] == stdout, sub["run"]
    assert sub["run"]["stderr"] == "", sub["run"]


def test_c_program_compiled_with_gcc(client):
    sub = client.run(submission({
        "compile.sh": "gcc -O2 -Wall -o prog prog.c -lpthread -lm\n",
        "prog.c": C_PROGRAM,
        "run.sh": "exec ./prog\n",
    }))
    assert_clean_run(sub, "sum 30, child exited 7, alarm 1, mapped 1, sqrt 1.414\n")
    assert sub["compile"]["output"] == "", sub["compile"]


def test_cxx_program_compiled_with_gxx(client):
    sub = client.run(submission({
        "compile.sh": "g++ -std=c++20 -O1 -pthread -o prog prog.cpp\n",
        "prog.cpp": CXX_PROGRAM,
        "run.sh": "exec ./prog\n",
    }), timeout=180)
    assert_clean_run(sub, "total 100, threads 3, files 1, thrown, sorted 1\n")
    assert sub["compile"]["output"] == "", sub["compile"]


def test_make_with_separate_objects_as_and_ld(client):
    sub = client.run(submission({
        "compile.sh": "make -s && as --version > /dev/null && ld --version > /dev/null\n",
        "Makefile": MAKEFILE,
        "main.c": '#include <stdio.h>\nint twice(int);\nint main(void) { printf("%d\\n", twice(21)); }\n',
        "util.c": "int twice(int x) { return 2 * x; }\n",
        "run.sh": "exec ./prog\n",
    }))
    assert_clean_run(sub, "42\n")


def test_python_threads_processes_sockets_asyncio(client):
    sub = client.run(submission({
        "prog.py": PY_PROGRAM,
        "run.sh": "exec python3 prog.py\n",
    }))
    assert_clean_run(
        sub, "[45, 'sig'] [0, 1, 4, 9, 16] from-sh hello 1 {'k': 1} 76875f65 True\n")


def test_shell_and_coreutils(client):
    sub = client.run(submission({"run.sh": SHELL_SCRIPT}))
    assert_clean_run(sub, "B\n25\nlines 3\nf\nf\ng\nthrough-fifo\n3\na\nLinux\nbash v 5\n")
