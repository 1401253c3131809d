// The HTTP API of SPEC sections 2-4 and 6: submissions, info, health, metrics and
// dependencies, over HTTP/1.1 with keep-alive.
//
//   cutor::HttpServerConfig config;            // defaults match the SPEC
//   config.auth_tokens = {"secret"};            // empty: no auth
//   cutor::HttpServer server("127.0.0.1", 8080, store, config, &dependency_service);
//   server.start();                             // binds; throws std::system_error
//   ...
//   server.stop();                              // or let the destructor do it
//
// The server owns its io_context and runs it on `http_threads` threads. Store calls are
// made on those threads; they are expected to be short.
#pragma once

#include <boost/json/object.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "api/dependency_service.h"
#include "model/limits.h"
#include "store/submission_store.h"

namespace cutor {

struct HttpServerConfig {
  LimitTable limits = LimitTable::builtin();
  int64_t max_body_bytes = 16 * 1024 * 1024;  // larger bodies: 413
  int64_t max_files = 1000;
  int64_t max_tests = 1000;           // test cases in one submission
  int64_t max_queue = 0;              // unfinished submissions before 503 queue_full; 0: no bound
  int64_t max_wait_ms = 60'000;       // bound of ?wait=true
  std::set<std::string> auth_tokens;  // accepted bearer tokens; empty: no auth
  uint32_t header_limit_bytes = 16 * 1024;               // larger request headers: 431
  std::chrono::milliseconds read_timeout{30'000};        // to read one whole request
  std::chrono::milliseconds keep_alive_timeout{60'000};  // idle between requests
  std::chrono::milliseconds write_timeout{30'000};       // to write one response
  int http_threads = 2;
  // Open connections served at once; one more is answered 503 (Retry-After) and closed.
  int64_t max_connections = 1024;
  // Finished submissions are deleted this long after they finish (shown in info only;
  // the sweep is a RetentionSweeper's); none: kept.
  std::optional<std::chrono::milliseconds> retention;
  std::string version = CUTOR_VERSION;
  boost::json::object features;  // the host's capabilities, merged into /api/v1/info
  // Appended to /metrics (e.g. the executor's stage duration histograms); may be empty.
  std::function<std::string()> extra_metrics_text;
  // Parts of the host that can fail (e.g. {"sandbox": {...}}); a part whose "ok" is false
  // makes GET /api/v1/health answer 503. Cheap and thread-safe; may be empty.
  std::function<boost::json::object()> health_parts;
};

class HttpServer {
 public:
  // `store` and `dependencies` (nullable: the dependency endpoints then answer 503
  // "unavailable") must outlive the server. `host` is an IP address literal.
  HttpServer(std::string host, uint16_t port, SubmissionStore& store, HttpServerConfig config,
             DependencyService* dependencies = nullptr);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens, registers the store listener and starts the threads. Throws
  // std::system_error naming the address when it cannot bind. Call once.
  void start();

  // The bound port (useful after binding port 0).
  uint16_t port() const;

  // Stops accepting, drops open connections (long-polls included) and joins the
  // threads. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cutor
