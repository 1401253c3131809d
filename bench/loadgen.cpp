// loadgen: an HTTP load generator for cutor's benchmarks (bench/run.sh builds and runs it).
//
// Each client is one thread with one keep-alive connection (reconnecting only when the
// server closes it). Every operation's latency is recorded; at the end one line of
// key=value pairs is printed: ops, errors, seconds, rps, p50/p95/p99/max in ms.
//
//   loadgen post    --port P --body FILE [--async] [--expect TEXT] --clients C (--count N |
//   --seconds S) loadgen get     --port P --ids FILE --clients C --count N loadgen waiters --port P
//   --id ID --clients N --pid SERVER_PID [--settle-ms MS]
//
// post:    POST /api/v1/submissions?wait=true; 200 and a body holding every --expect text
//          is a success. --async: POST without wait (202 and an id), then
//          GET /api/v1/submissions/{id}?wait=true, timed together as one operation.
// get:     GET /api/v1/submissions/{id} for ids picked round-robin from FILE (one a line).
// waiters: opens N connections that each send GET {id}?wait=true and hold them open, then
//          prints the server's VmRSS before and with them, and how many were answered early.
// --watch-cmdline TEXT (any mode): counts the distinct processes whose command line holds
//          TEXT while the mode runs (polls /proc every 2 ms), printed as watched=N.
//
// Only the given port on 127.0.0.1 is ever contacted. Every loop is bounded in count and time.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string mode;
  int port = 0;
  std::string body_file;
  std::string ids_file;
  std::string id;
  std::vector<std::string> expect;
  bool async = false;
  int clients = 1;
  long count = 0;  // operations in all (split over clients); 0: use seconds
  double seconds = 0;
  long max_ops = 10'000'000;  // hard bound on operations in a timed run
  int pid = 0;
  int settle_ms = 2000;
  std::string watch_cmdline;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "loadgen: " << why << "\n"
            << "usage: loadgen post|get|waiters --port P [--body FILE] [--ids FILE] [--id ID]\n"
               "       [--async] [--expect TEXT]... [--clients C] [--count N] [--seconds S]\n"
               "       [--pid PID] [--settle-ms MS] [--watch-cmdline TEXT]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  if (argc < 2) usage("no mode");
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--port")
      o.port = std::stoi(value());
    else if (a == "--body")
      o.body_file = value();
    else if (a == "--ids")
      o.ids_file = value();
    else if (a == "--id")
      o.id = value();
    else if (a == "--expect")
      o.expect.push_back(value());
    else if (a == "--async")
      o.async = true;
    else if (a == "--clients")
      o.clients = std::stoi(value());
    else if (a == "--count")
      o.count = std::stol(value());
    else if (a == "--seconds")
      o.seconds = std::stod(value());
    else if (a == "--pid")
      o.pid = std::stoi(value());
    else if (a == "--settle-ms")
      o.settle_ms = std::stoi(value());
    else if (a == "--watch-cmdline")
      o.watch_cmdline = value();
    else
      usage("unknown option " + a);
  }
  if (o.port <= 0 || o.port > 65535) usage("--port is required");
  if (o.clients < 1 || o.clients > 5000) usage("--clients must be 1..5000");
  return o;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The value of "id" in a small JSON reply like {"id":"…","status":"QUEUED"}.
std::string json_id(const std::string& body) {
  auto k = body.find("\"id\"");
  if (k == std::string::npos) return {};
  auto q1 = body.find('"', body.find(':', k) + 1);
  auto q2 = body.find('"', q1 + 1);
  if (q1 == std::string::npos || q2 == std::string::npos) return {};
  return body.substr(q1 + 1, q2 - q1 - 1);
}

// One keep-alive HTTP/1.1 connection to 127.0.0.1:port; reconnects when the server closed it.
class Connection {
 public:
  explicit Connection(int port) : port_(port), socket_(ioc_) {}

  // Sends one request and reads the whole reply. Throws on a transport error.
  http::response<http::string_body> send(http::verb verb, const std::string& target,
                                         const std::string& body) {
    for (int attempt = 0;; ++attempt) {
      if (!socket_.is_open()) connect();
      http::request<http::string_body> req{verb, target, 11};
      req.set(http::field::host, "127.0.0.1");
      req.keep_alive(true);
      if (verb == http::verb::post) {
        req.set(http::field::content_type, "application/json");
        req.body() = body;
      }
      req.prepare_payload();
      beast::error_code ec;
      http::write(socket_, req, ec);
      http::response<http::string_body> res;
      if (!ec) {
        http::response_parser<http::string_body> parser;
        parser.body_limit(256 << 20);
        http::read(socket_, buffer_, parser, ec);
        if (!ec) res = parser.release();
      }
      if (ec) {
        socket_.close();
        buffer_.clear();
        // A keep-alive connection the server closed between requests: retry once, fresh.
        if (attempt == 0 && (ec == http::error::end_of_stream || ec == asio::error::eof ||
                             ec == asio::error::connection_reset || ec == asio::error::broken_pipe))
          continue;
        throw std::runtime_error(std::string(http::to_string(verb)) + " " + target + ": " +
                                 ec.message());
      }
      if (!res.keep_alive()) {
        socket_.close();
        buffer_.clear();
      }
      return res;
    }
  }

 private:
  void connect() {
    asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port_));
    socket_.connect(ep);
    socket_.set_option(asio::ip::tcp::no_delay(true));
  }
  int port_;
  asio::io_context ioc_;
  asio::ip::tcp::socket socket_;
  beast::flat_buffer buffer_;
};

struct Tally {
  std::mutex mu;
  std::vector<double> latencies_ms;
  long errors = 0;
  std::string first_error;
  void error(const std::string& what) {
    std::lock_guard lock(mu);
    if (errors++ == 0) first_error = what;
  }
};

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

// Polls /proc for processes whose command line holds a text and counts the distinct ones
// whose parent's does not (a forked helper of a matching process shares its command line).
class CmdlineWatcher {
 public:
  explicit CmdlineWatcher(std::string text) : text_(std::move(text)) {
    if (!text_.empty()) thread_ = std::jthread([this](std::stop_token st) { loop(st); });
  }
  long count() {
    if (thread_.joinable()) {
      thread_.request_stop();
      thread_.join();
    }
    std::set<std::string> matching_pids;
    for (const auto& [key, ppid] : seen_) matching_pids.insert(key.substr(0, key.find('/')));
    long roots = 0;
    for (const auto& [key, ppid] : seen_)
      if (!matching_pids.count(ppid)) ++roots;
    return roots;
  }

 private:
  void loop(std::stop_token st) {
    const std::string self = std::to_string(::getpid());
    auto deadline = Clock::now() + std::chrono::minutes(30);
    while (!st.stop_requested() && Clock::now() < deadline) {
      std::error_code ec;
      for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
        const std::string name = entry.path().filename().string();
        if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0])) || name == self)
          continue;
        std::ifstream in(entry.path() / "cmdline", std::ios::binary);
        std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::replace(cmd.begin(), cmd.end(), '\0', ' ');
        if (cmd.find(text_) == std::string::npos) continue;
        // /proc/PID/stat after the ")" of the name: state ppid ... starttime (field 22).
        std::ifstream stat(entry.path() / "stat");
        std::string s((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
        auto close = s.rfind(')');
        if (close == std::string::npos) continue;
        std::istringstream rest(s.substr(close + 2));
        std::string state, ppid, field;
        rest >> state >> ppid;
        for (int i = 0; i < 18 && rest >> field; ++i) {
        }
        // pid + start time identifies a process even if pids are reused.
        seen_.emplace(name + "/" + field, ppid);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  std::string text_;
  std::map<std::string, std::string> seen_;  // "pid/starttime" -> parent pid
  std::jthread thread_;
};

long vm_rss_kb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

// One operation of `post` or `get`; returns an error description or nothing.
std::optional<std::string> one_op(const Options& o, Connection& c, const std::string& body,
                                  const std::vector<std::string>& ids, size_t n) {
  if (o.mode == "get") {
    const std::string& id = ids[n % ids.size()];
    auto res = c.send(http::verb::get, "/api/v1/submissions/" + id, "");
    if (res.result_int() != 200) return "GET " + id + ": HTTP " + std::to_string(res.result_int());
    if (res.body().find(id) == std::string::npos) return "GET " + id + ": reply lacks the id";
    return std::nullopt;
  }
  http::response<http::string_body> res;
  if (o.async) {
    auto accepted = c.send(http::verb::post, "/api/v1/submissions", body);
    if (accepted.result_int() != 202)
      return "POST: HTTP " + std::to_string(accepted.result_int()) + " " + accepted.body();
    std::string id = json_id(accepted.body());
    if (id.empty()) return "POST: no id in " + accepted.body();
    res = c.send(http::verb::get, "/api/v1/submissions/" + id + "?wait=true", "");
  } else {
    res = c.send(http::verb::post, "/api/v1/submissions?wait=true", body);
  }
  if (res.result_int() != 200)
    return "HTTP " + std::to_string(res.result_int()) + " " + res.body().substr(0, 300);
  if (res.body().find("\"status\":\"FINISHED\"") == std::string::npos)
    return "not FINISHED within the wait bound: " + res.body().substr(0, 300);
  for (const auto& e : o.expect)
    if (res.body().find(e) == std::string::npos)
      return "reply lacks " + e + ": " + res.body().substr(0, 600);
  return std::nullopt;
}

int run_load(const Options& o) {
  std::string body;
  std::vector<std::string> ids;
  if (o.mode == "post") {
    if (o.body_file.empty()) usage("post needs --body");
    body = read_file(o.body_file);
  } else {
    if (o.ids_file.empty()) usage("get needs --ids");
    std::istringstream in(read_file(o.ids_file));
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) ids.push_back(line);
    if (ids.empty()) usage("--ids file is empty");
  }
  if (o.count <= 0 && o.seconds <= 0) usage("give --count or --seconds");

  CmdlineWatcher watcher(o.watch_cmdline);
  Tally tally;
  std::atomic<long> next{0};
  const long limit = o.count > 0 ? o.count : o.max_ops;
  const auto start = Clock::now();
  // A count-bounded run still stops after an hour; a timed one after its seconds.
  const auto deadline =
      start +
      (o.seconds > 0
           ? std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds))
           : std::chrono::duration_cast<Clock::duration>(std::chrono::hours(1)));
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < o.clients; ++t) {
      threads.emplace_back([&, t] {
        Connection c(o.port);
        std::vector<double> mine;
        // Spread the `get` ids so clients don't all read the same row.
        size_t offset = static_cast<size_t>(t) * 7919;
        for (;;) {
          long n = next.fetch_add(1);
          if (n >= limit || Clock::now() >= deadline) break;
          auto t0 = Clock::now();
          std::optional<std::string> err;
          try {
            err = one_op(o, c, body, ids, offset + static_cast<size_t>(n));
          } catch (const std::exception& e) {
            err = e.what();
            std::this_thread::sleep_for(
                std::chrono::milliseconds(10));  // don't spin on a dead server
          }
          auto dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
          if (err)
            tally.error(*err);
          else
            mine.push_back(dt);
        }
        std::lock_guard lock(tally.mu);
        tally.latencies_ms.insert(tally.latencies_ms.end(), mine.begin(), mine.end());
      });
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  auto& l = tally.latencies_ms;
  std::sort(l.begin(), l.end());
  std::printf(
      "ops=%zu errors=%ld seconds=%.3f rps=%.1f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f max_ms=%.3f",
      l.size(), tally.errors, secs, static_cast<double>(l.size()) / secs, percentile(l, 50),
      percentile(l, 95), percentile(l, 99), l.empty() ? 0.0 : l.back());
  if (!o.watch_cmdline.empty()) std::printf(" watched=%ld", watcher.count());
  std::printf("\n");
  if (tally.errors) std::fprintf(stderr, "loadgen: first error: %s\n", tally.first_error.c_str());
  return 0;
}

// Opens o.clients connections, each long-polling GET {id}?wait=true, and measures RSS.
int run_waiters(const Options& o) {
  if (o.id.empty() || o.pid <= 0) usage("waiters needs --id and --pid");
  const long rss_before = vm_rss_kb(o.pid);
  const std::string request =
      "GET /api/v1/submissions/" + o.id +
      "?wait=true HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n";
  std::vector<int> fds;
  fds.reserve(static_cast<size_t>(o.clients));
  long failed = 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < o.clients; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      std::perror("loadgen: socket");
      ++failed;
      continue;
    }
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(request.size())) {
      ++failed;
      ::close(fd);
      continue;
    }
    fds.push_back(fd);
  }
  // Let the server read every request and park every waiter.
  std::this_thread::sleep_for(std::chrono::milliseconds(o.settle_ms));
  const long rss_with = vm_rss_kb(o.pid);
  // A waiter whose socket is readable already was answered (or refused) early.
  std::vector<pollfd> pfds;
  for (int fd : fds) pfds.push_back({fd, POLLIN, 0});
  ::poll(pfds.data(), pfds.size(), 0);
  long answered_early = 0;
  for (const auto& p : pfds)
    if (p.revents) ++answered_early;
  for (int fd : fds) ::close(fd);
  std::printf(
      "waiters=%zu connect_failed=%ld answered_early=%ld rss_before_kb=%ld rss_with_kb=%ld\n",
      fds.size(), failed, answered_early, rss_before, rss_with);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o = parse(argc, argv);
    if (o.mode == "post" || o.mode == "get") return run_load(o);
    if (o.mode == "waiters") return run_waiters(o);
    usage("unknown mode " + o.mode);
  } catch (const std::exception& e) {
    std::cerr << "loadgen: " << e.what() << "\n";
    return 1;
  }
}
