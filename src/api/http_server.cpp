#include "api/http_server.h"

#include <fmt/format.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <map>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include "api/change_waiters.h"
#include "api/envicutor_api.h"
#include "api/json_text.h"
#include "api/judge0_api.h"
#include "api/metrics.h"
#include "api/piston_api.h"
#include "api/runtime_api.h"
#include "api/submission_json.h"
#include "api/web_routes.h"

namespace cutor {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kApi = "/api/v1";
constexpr std::chrono::seconds kLingerTime{2};  // draining a refused request's body
constexpr int kMaxListLimit = 1000;
constexpr int kDefaultListLimit = 50;
// Connections over max_connections still being answered 503; past this many more are
// closed unanswered, so a flood cannot hold fds through the refusals themselves.
constexpr int kMaxRefusalsInFlight = 64;

Response json_response(http::status status, const json::value& body) {
  Response res{status, 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = to_json_text(body);
  res.body() += '\n';
  return res;
}

Response error_response(const ApiError& e) {
  return json_response(static_cast<http::status>(e.http_status), api_error_to_json(e));
}

Response error_response(int status, std::string code, std::string field, std::string what) {
  return error_response(make_api_error(status, std::move(code), std::move(field), std::move(what)));
}

// Lower-case RFC 4122 text form, as new_uuid() makes them.
bool looks_like_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash_pos = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_pos != (s[i] == '-')) return false;
    if (!dash_pos && !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  }
  return true;
}

bool looks_like_dependency_key(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return false;
  return true;
}

// Compares without an early exit, so response time does not reveal a matching prefix.
bool constant_time_equal(std::string_view a, std::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

bool iequals_ascii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "application/json", optionally with parameters ("; charset=utf-8").
bool is_json_content_type(std::string_view value) {
  return iequals_ascii(trim(value.substr(0, value.find(';'))), "application/json");
}

std::string dependency_state_name(DependencyState s) {
  switch (s) {
    case DependencyState::kBuilding:
      return "building";
    case DependencyState::kReady:
      return "ready";
    case DependencyState::kFailed:
      return "failed";
    case DependencyState::kEvicting:
      return "evicting";
  }
  return "failed";
}

json::value optional_json(const std::optional<std::string>& v) {
  return v ? json::value(*v) : json::value(nullptr);
}

json::object dependency_to_json(const DependencyEntry& d) {
  json::object o;
  o["key"] = d.key;
  o["state"] = dependency_state_name(d.state);
  o["store_path"] = optional_json(d.store_path);
  json::array packages;
  for (const auto& p : d.packages) {
    packages.push_back(json::object{
        {"name", p.name}, {"version", p.version}, {"path", p.path}, {"size_bytes", p.size_bytes}});
  }
  o["packages"] = std::move(packages);
  o["size_bytes"] = d.size_bytes ? json::value(*d.size_bytes) : json::value(nullptr);
  o["created_at"] = format_rfc3339_ms(d.created_at_ms);
  o["last_used_at"] =
      d.last_used_at_ms ? json::value(format_rfc3339_ms(*d.last_used_at_ms)) : json::value(nullptr);
  o["use_count"] = d.use_count;
  o["error"] = optional_json(d.error);
  return o;
}

// The decoded query string of one request: each name at most once.
struct Query {
  std::map<std::string, std::string> values;
  std::optional<ApiError> error;

  // Refuses names outside `allowed`.
  std::optional<ApiError> only(std::initializer_list<std::string_view> allowed) const {
    if (error) return error;
    for (const auto& [k, v] : values) {
      bool ok = false;
      for (auto a : allowed) ok = ok || k == a;
      if (!ok) return make_api_error(400, "invalid_request", k, "unknown query parameter");
    }
    return std::nullopt;
  }
  const std::string* find(const std::string& k) const {
    auto it = values.find(k);
    return it == values.end() ? nullptr : &it->second;
  }
};

// Whether handling `req` may wait for a submission to finish (?wait=true, or the Piston
// execute, which always does): such requests watch for their client leaving.
bool may_long_poll(const Request& req) {
  auto url = boost::urls::parse_origin_form(req.target());
  if (!url) return false;
  if (url->encoded_path() == "/api/v2/execute" || url->encoded_path() == "/execute") return true;
  for (const auto& param : url->params())
    if (param.key == "wait" && param.value == "true") return true;
  return false;
}

// Splits "/a/b/c" into {"a","b","c"}; a trailing slash yields an empty last segment.
std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  if (path.empty() || path.front() != '/') return parts;
  path.remove_prefix(1);
  while (true) {
    const size_t slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

}  // namespace

struct HttpServer::Impl {
  Impl(std::string host_in, uint16_t port_in, SubmissionStore& store_in, HttpServerConfig config_in,
       DependencyService* deps_in)
      : host(std::move(host_in)),
        requested_port(port_in),
        store(store_in),
        config(std::move(config_in)),
        deps(deps_in) {}

  const std::string host;
  const uint16_t requested_port;
  SubmissionStore& store;
  const HttpServerConfig config;
  DependencyService* const deps;
  HttpMetrics metrics;
  // Declared before the io_context: coroutine frames destroyed with it unregister here.
  std::shared_ptr<ChangeWaiters> waiters = std::make_shared<ChangeWaiters>();
  std::unique_ptr<asio::io_context> ioc;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::optional<int> listener_handle;
  std::atomic<uint16_t> bound_port{0};
  std::atomic<int64_t> open_connections{0};  // sessions running (see max_connections)
  std::atomic<int> refusals_in_flight{0};
  bool started = false;
  bool stopped = false;

  void start();
  void stop();

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> session(tcp::socket socket);
  // Answers a connection over max_connections with 503 and closes it.
  asio::awaitable<void> refuse_connection(tcp::socket socket);
  // Completes when the client closes or resets the connection while its request is being
  // handled. Bytes it sends meanwhile (a pipelined request) go to `buffer` and end the
  // watch without completing; so does a cancel.
  static asio::awaitable<void> client_departure(tcp::socket& socket, beast::flat_buffer& buffer);
  // Half-closes, drains what the client still sends (briefly, when `linger`), closes.
  static asio::awaitable<void> close_stream(beast::tcp_stream& stream, bool linger);
  asio::awaitable<Response> handle(const Request& req);
  asio::awaitable<Response> route(const Request& req);

  // Endpoints.
  asio::awaitable<Response> post_submission(const Request& req, const Query& q);
  asio::awaitable<Response> get_submission(const std::string& id, const Query& q);
  Response delete_submission(const std::string& id, const Query& q);
  Response list_submissions(const Query& q);
  Response info();
  Response metrics_text();
  Response list_dependencies();
  Response post_dependency(const Request& req);
  Response delete_dependency(const std::string& key);
  asio::awaitable<Response> piston_execute(const Request& req);
  Response runtimes_endpoint(const Request& req, const std::vector<std::string_view>& parts);

  // Inserts `s` (QUEUED) and waits until it is FINISHED, gone or max_wait_ms passed;
  // answers what the store then holds, synced to disk.
  asio::awaitable<std::optional<Submission>> insert_and_wait(const Submission& s);

  // Re-reads `id` until FINISHED, gone, or `deadline`, sleeping on `reg` in between.
  asio::awaitable<std::optional<Submission>> read_until_finished(const std::string& id,
                                                                 ChangeWaiters::Registration& reg,
                                                                 Clock::time_point deadline);
  std::optional<ApiError> check_auth(const Request& req) const;
  // check_auth's 401 (with WWW-Authenticate), or nothing when the request may go on.
  std::optional<Response> unauthorized_response(const Request& req) const;
};

void HttpServer::Impl::start() {
  if (started) throw std::logic_error("HttpServer::start called twice");
  started = true;
  ioc = std::make_unique<asio::io_context>(std::max(1, config.http_threads));
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) throw std::system_error(ec, fmt::format("HttpServer: '{}' is not an IP address", host));
  const tcp::endpoint endpoint(address, requested_port);
  const std::string where = fmt::format("{}:{}", host, requested_port);
  acceptor = std::make_unique<tcp::acceptor>(*ioc);
  acceptor->open(endpoint.protocol(), ec);
  if (ec) throw std::system_error(ec, "HttpServer: socket() for " + where);
  acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  acceptor->bind(endpoint, ec);
  if (ec) throw std::system_error(ec, "HttpServer: bind(" + where + ")");
  acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::system_error(ec, "HttpServer: listen(" + where + ")");
  bound_port = acceptor->local_endpoint().port();

  std::weak_ptr<ChangeWaiters> weak = waiters;
  // Long-polls wait for FINISHED only (read_until_finished): waking them for every status
  // and stage write would cost each waiter a cross-thread post and a store read per write,
  // about ten per submission, for nothing. The deadline still answers with the current state.
  listener_handle = store.add_listener([weak](const std::string& id, SubmissionStatus status) {
    if (status != SubmissionStatus::kFinished) return;
    if (auto w = weak.lock()) w->notify(id);
  });
  asio::co_spawn(acceptor->get_executor(), accept_loop(), asio::detached);
  for (int i = 0; i < std::max(1, config.http_threads); ++i)
    threads.emplace_back([this] {
      ::pthread_setname_np(::pthread_self(), "cutor-http");
      ioc->run();
    });
  spdlog::info("http: listening on {}:{}", host, bound_port.load());
}

void HttpServer::Impl::stop() {
  if (!started || stopped) return;
  stopped = true;
  waiters->close();
  if (listener_handle) store.remove_listener(*listener_handle);
  ioc->stop();
  for (auto& t : threads) t.join();
  threads.clear();
  acceptor.reset();
  ioc.reset();  // destroys suspended sessions: their sockets close, waiters unregister
}

asio::awaitable<void> HttpServer::Impl::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor->async_accept(asio::make_strand(*ioc), kTuple);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of fds or similar: back off instead of spinning, keep serving the others.
      spdlog::warn("http: accept: {}", ec.message());
      asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(100));
      co_await pause.async_wait(kTuple);
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto ex = socket.get_executor();
    if (open_connections.load() >= config.max_connections) {
      if (refusals_in_flight.fetch_add(1) >= kMaxRefusalsInFlight) {
        refusals_in_flight.fetch_sub(1);
        socket.close(ec);
        continue;
      }
      asio::co_spawn(ex, refuse_connection(std::move(socket)), asio::detached);
      continue;
    }
    open_connections.fetch_add(1);
    asio::co_spawn(ex, session(std::move(socket)), [this](std::exception_ptr e) {
      open_connections.fetch_sub(1);
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("http: session ended by exception: {}", ex.what());
      }
    });
  }
}

asio::awaitable<void> HttpServer::Impl::session(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  boost::system::error_code peer_ec;
  const auto peer = stream.socket().remote_endpoint(peer_ec);
  bool linger = false;  // unread request bytes may remain: drain before closing

  for (;;) {
    // Idle between requests: wait for the first byte under the keep-alive timeout.
    if (buffer.size() == 0) {
      stream.expires_after(config.keep_alive_timeout);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), kTuple);
      if (ec) break;  // closed by the client, idle too long, or reset
      buffer.commit(n);
    }
    const auto started_at = Clock::now();
    http::request_parser<http::string_body> parser;
    parser.header_limit(config.header_limit_bytes);
    parser.body_limit(static_cast<uint64_t>(config.max_body_bytes));
    stream.expires_after(config.read_timeout);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kTuple);
    std::optional<Response> refused;  // answered from the headers alone, body unread
    if (!ec && !parser.is_done()) {
      // Authenticated before the body is read or 100 Continue is sent: an unauthenticated
      // client cannot make the server buffer max_body_bytes. Health needs no token.
      auto url = boost::urls::parse_origin_form(parser.get().target());
      if (!url ||
          (url->encoded_path() != "/api/v1/health" && !is_playground_path(url->encoded_path())))
        refused = unauthorized_response(parser.get());
    }
    if (!ec && !parser.is_done() && !refused) {
      const auto expect = parser.get()[http::field::expect];
      if (iequals_ascii(expect, "100-continue")) {
        http::response<http::empty_body> go_on{http::status::continue_, 11};
        auto [wec, wn] = co_await http::async_write(stream, go_on, kTuple);
        ec = wec;
      }
      if (!ec) std::tie(ec, n) = co_await http::async_read(stream, buffer, parser, kTuple);
    }

    Response res;
    bool keep_alive = false;
    std::string method = "-", target = "-";
    if (ec) {
      // A closed or reset connection has no one to answer. On a timeout tcp_stream has
      // already closed the socket: the slow client is simply dropped.
      if (ec == http::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::connection_reset || ec == beast::error::timeout)
        break;
      if (ec == http::error::body_limit) {
        res = error_response(413, "body_too_large", "",
                             fmt::format("request body is over {} bytes", config.max_body_bytes));
      } else if (ec == http::error::header_limit) {
        res = error_response(
            431, "headers_too_large", "",
            fmt::format("request headers are over {} bytes", config.header_limit_bytes));
      } else {
        res = error_response(400, "bad_request", "", "malformed HTTP request: " + ec.message());
      }
      linger = true;
    } else if (refused) {
      res = std::move(*refused);
      method = std::string(parser.get().method_string());
      target = std::string(parser.get().target());
      linger = true;  // the body is never read: close after the answer
    } else if (const unsigned v = parser.get().version(); v != 10 && v != 11) {
      res = error_response(400, "bad_request", "",
                           fmt::format("unsupported HTTP version {}.{}", v / 10, v % 10));
      linger = true;
    } else {
      Request req = parser.release();
      method = std::string(req.method_string());
      target = std::string(req.target());
      stream.expires_never();  // a long-poll may take longer than the read timeout
      if (may_long_poll(req)) {
        // A long-poll whose client leaves is cancelled at once, so its waiter is dropped
        // then and not at its deadline (handle() winds down on the cancel; see
        // read_until_finished).
        using namespace asio::experimental::awaitable_operators;
        auto outcome = co_await (handle(req) || client_departure(stream.socket(), buffer));
        if (outcome.index() == 1) {
          spdlog::debug("http: {} {} {}: client left while waiting", peer.address().to_string(),
                        method, target);
          break;
        }
        res = std::get<0>(std::move(outcome));
      } else {
        res = co_await handle(req);
      }
      keep_alive = req.keep_alive();
    }
    res.keep_alive(keep_alive);
    res.prepare_payload();
    const int status = res.result_int();
    // Counted before the write, so a client that reads /metrics next sees its request.
    const double seconds = std::chrono::duration<double>(Clock::now() - started_at).count();
    metrics.record(status, seconds);
    stream.expires_after(config.write_timeout);
    auto [wec, wn] = co_await http::async_write(stream, res, kTuple);
    spdlog::debug("http: {} {} {} -> {} in {:.1f} ms", peer.address().to_string(), method, target,
                  status, seconds * 1000);
    if (wec || !keep_alive) break;
  }

  co_await close_stream(stream, linger);
}

asio::awaitable<void> HttpServer::Impl::client_departure(tcp::socket& socket,
                                                         beast::flat_buffer& buffer) {
  auto [ec, n] = co_await socket.async_read_some(buffer.prepare(4096), kTuple);
  if (ec) co_return;  // closed or reset (or cancelled: the request was answered first)
  buffer.commit(n);
  // The client is still there and sent more: stop watching, wait to be cancelled.
  asio::steady_timer forever(co_await asio::this_coro::executor, Clock::time_point::max());
  co_await forever.async_wait(kTuple);
}

asio::awaitable<void> HttpServer::Impl::close_stream(beast::tcp_stream& stream, bool linger) {
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  if (linger) {
    // Read and drop what the client is still sending, briefly, so closing does not
    // reset the connection before the client has read the error.
    stream.expires_after(kLingerTime);
    std::array<char, 16384> sink;
    for (;;) {
      auto [rec, rn] = co_await stream.async_read_some(asio::buffer(sink), kTuple);
      if (rec) break;
    }
  }
  stream.socket().close(ignored);
}

asio::awaitable<void> HttpServer::Impl::refuse_connection(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  Response res = error_response(
      503, "too_many_connections", "",
      fmt::format("the server already has {} open connections", config.max_connections));
  res.set(http::field::retry_after, "1");
  res.keep_alive(false);
  res.prepare_payload();
  metrics.record(503, 0.0);
  stream.expires_after(config.write_timeout);
  co_await http::async_write(stream, res, kTuple);
  co_await close_stream(stream, true);
  refusals_in_flight.fetch_sub(1);
}

asio::awaitable<Response> HttpServer::Impl::handle(const Request& req) {
  try {
    co_return co_await route(req);
  } catch (const QueueFullError& e) {
    Response res =
        error_response(503, "queue_full", "", std::string("the queue is full: ") + e.what());
    res.set(http::field::retry_after, "1");
    co_return res;
  } catch (const StoreError& e) {
    spdlog::error("http: store: {}", e.what());
    Response res = error_response(503, "store_unavailable", "",
                                  std::string("the submission store failed: ") + e.what());
    res.set(http::field::retry_after, "1");
    co_return res;
  } catch (const std::exception& e) {
    spdlog::error("http: {} {}: {}", std::string(req.method_string()), std::string(req.target()),
                  e.what());
    co_return error_response(500, "internal_error", "", e.what());
  }
}

std::optional<Response> HttpServer::Impl::unauthorized_response(const Request& req) const {
  auto e = check_auth(req);
  if (!e) return std::nullopt;
  Response res = error_response(*e);
  res.set(http::field::www_authenticate, "Bearer realm=\"cutor\"");
  return res;
}

std::optional<ApiError> HttpServer::Impl::check_auth(const Request& req) const {
  if (config.auth_tokens.empty()) return std::nullopt;
  // Judge0's clients send their token as X-Auth-Token (Judge0's default AUTHN_HEADER).
  if (const std::string_view x = req["X-Auth-Token"]; !x.empty()) {
    auto url = boost::urls::parse_origin_form(req.target());
    if (url && is_judge0_path(url->encoded_path())) {
      bool match = false;
      for (const auto& t : config.auth_tokens) match = constant_time_equal(trim(x), t) || match;
      if (match) return std::nullopt;
      return make_api_error(401, "unauthorized", "", "the X-Auth-Token is not accepted");
    }
  }
  const std::string_view header = req[http::field::authorization];
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() > kScheme.size() && iequals_ascii(header.substr(0, kScheme.size()), kScheme)) {
    const std::string_view token = trim(header.substr(kScheme.size()));
    bool match = false;
    for (const auto& t : config.auth_tokens) match = constant_time_equal(token, t) || match;
    if (match) return std::nullopt;
    return make_api_error(401, "unauthorized", "", "the bearer token is not accepted");
  }
  return make_api_error(401, "unauthorized", "",
                        "an Authorization: Bearer <token> header is required");
}

asio::awaitable<Response> HttpServer::Impl::route(const Request& req) {
  auto url = boost::urls::parse_origin_form(req.target());
  if (!url)
    co_return error_response(400, "bad_request", "", "the request target is not a valid path");
  const std::string path(url->encoded_path());
  const std::vector<std::string_view> parts = split_path(path);
  const auto method = req.method();

  // The health check answers without auth and without touching the store.
  if (path == "/api/v1/health") {
    if (method != http::verb::get) {
      Response res = error_response(405, "method_not_allowed", "", "use GET");
      res.set(http::field::allow, "GET");
      co_return res;
    }
    json::object body{{"status", "ok"}};
    bool ok = true;
    if (config.health_parts) {
      for (const auto& [name, part] : config.health_parts()) {
        if (const json::object* o = part.if_object();
            o != nullptr && o->contains("ok") && !o->at("ok").as_bool())
          ok = false;
        body[name] = part;
      }
    }
    if (!ok) body["status"] = "failing";
    co_return json_response(ok ? http::status::ok : http::status::service_unavailable, body);
  }
  // The playground's page and scripts hold no data; the page asks for the token.
  if (is_playground_path(path)) co_return *web_route(req, path);
  if (auto res = unauthorized_response(req)) co_return std::move(*res);

  Query q;
  for (const auto& p : url->params()) {
    if (p.key.empty() && p.value.empty()) continue;  // "?" alone, or a trailing "&"
    if (!q.values.emplace(p.key, p.value).second && !q.error)
      q.error =
          make_api_error(400, "invalid_request", p.key, "query parameter given more than once");
  }

  const auto not_allowed = [](std::string allow) {
    Response res = error_response(405, "method_not_allowed", "", "allowed methods: " + allow);
    res.set(http::field::allow, allow);
    return res;
  };
  const auto no_params = [&]() { return q.only({}); };

  const bool is_api =
      path.starts_with(kApi) && parts.size() >= 3 && parts[0] == "api" && parts[1] == "v1";
  if (path == "/metrics") {
    if (method != http::verb::get) co_return not_allowed("GET");
    if (auto e = no_params()) co_return error_response(*e);
    co_return metrics_text();
  }
  if (path == "/api/v1/openapi.json") {
    if (auto e = no_params(); e && method == http::verb::get) co_return error_response(*e);
    co_return *web_route(req, path);
  }
  if (is_api && parts.size() == 3 && parts[2] == "info") {
    if (method != http::verb::get) co_return not_allowed("GET");
    if (auto e = no_params()) co_return error_response(*e);
    co_return info();
  }
  if (is_api && parts[2] == "submissions" && parts.size() == 3) {
    if (method == http::verb::post) co_return co_await post_submission(req, q);
    if (method == http::verb::get) co_return list_submissions(q);
    co_return not_allowed("GET, POST");
  }
  if (is_api && parts[2] == "submissions" && parts.size() == 4) {
    if (method != http::verb::get && method != http::verb::delete_)
      co_return not_allowed("GET, DELETE");
    const std::string id(parts[3]);
    if (!looks_like_uuid(id))
      co_return error_response(404, "not_found", "", "no submission with id " + id);
    if (method == http::verb::get) co_return co_await get_submission(id, q);
    co_return delete_submission(id, q);
  }
  if (is_api && parts[2] == "runtimes" && (parts.size() == 3 || parts.size() == 5)) {
    if (auto e = no_params()) co_return error_response(*e);
    co_return runtimes_endpoint(req, parts);
  }
  // Piston's v2 API (piston_api.h); it answers its own error shape.
  if (path == "/api/v2/runtimes" || path == "/api/v2/execute") {
    const bool execute = path == "/api/v2/execute";
    if (method != (execute ? http::verb::post : http::verb::get))
      co_return not_allowed(execute ? "POST" : "GET");
    if (!execute) co_return json_response(http::status::ok, piston_runtimes(load_catalogue(store)));
    co_return co_await piston_execute(req);
  }
  // Judge0 CE's API (judge0_api.h); it answers its own error shapes.
  if (is_judge0_path(path)) {
    if (q.error)
      co_return json_response(http::status::bad_request, json::object{{"error", q.error->message}});
    const Judge0Context ctx{store, config.limits, config.max_queue, config.version,
                            [this](const Submission& s) { return insert_and_wait(s); }};
    Judge0Answer a = co_await handle_judge0(ctx, req.method_string(), path, q.values,
                                            req[http::field::content_type], req.body());
    if (!a.body) co_return Response{static_cast<http::status>(a.http_status), 11};
    co_return json_response(static_cast<http::status>(a.http_status), *a.body);
  }
  // envicutor's API (envicutor_api.h): /runtimes, /execute; {"message"} errors.
  if (is_envicutor_path(path)) {
    if (q.error)
      co_return json_response(http::status::bad_request,
                              json::object{{"message", q.error->message}});
    const EnvicutorContext ctx{store, config.limits, deps, config.max_wait_ms,
                               [this](const Submission& s) { return insert_and_wait(s); }};
    EnvicutorAnswer a = co_await handle_envicutor(ctx, req.method_string(), path, q.values,
                                                  req[http::field::content_type], req.body());
    if (!a.body) co_return Response{static_cast<http::status>(a.http_status), 11};
    co_return json_response(static_cast<http::status>(a.http_status), *a.body);
  }
  if (is_api && parts[2] == "dependencies" && parts.size() == 3) {
    if (method != http::verb::get && method != http::verb::post) co_return not_allowed("GET, POST");
    if (auto e = no_params()) co_return error_response(*e);
    if (deps == nullptr)
      co_return error_response(503, "unavailable", "", "this server has no environment cache");
    if (method == http::verb::get) co_return list_dependencies();
    co_return post_dependency(req);
  }
  if (is_api && parts[2] == "dependencies" && parts.size() == 4) {
    if (method != http::verb::delete_) co_return not_allowed("DELETE");
    if (auto e = no_params()) co_return error_response(*e);
    if (deps == nullptr)
      co_return error_response(503, "unavailable", "", "this server has no environment cache");
    const std::string key(parts[3]);
    if (!looks_like_dependency_key(key))
      co_return error_response(404, "not_found", "", "no cached environment with key " + key);
    co_return delete_dependency(key);
  }
  co_return error_response(404, "not_found", "", "no such endpoint: " + path);
}

// Reads ?encoding=: false for absent, true for base64, an error for anything else.
static std::expected<bool, ApiError> base64_requested(const Query& q) {
  const std::string* v = q.find("encoding");
  if (v == nullptr) return false;
  if (*v == "base64") return true;
  return std::unexpected(
      make_api_error(400, "invalid_request", "encoding", "must be base64 when given"));
}

static std::expected<bool, ApiError> wait_requested(const Query& q) {
  const std::string* v = q.find("wait");
  if (v == nullptr || *v == "false") return false;
  if (*v == "true") return true;
  return std::unexpected(make_api_error(400, "invalid_request", "wait", "must be true or false"));
}

asio::awaitable<std::optional<Submission>> HttpServer::Impl::read_until_finished(
    const std::string& id, ChangeWaiters::Registration& reg, Clock::time_point deadline) {
  for (;;) {
    std::optional<Submission> s = store.get(id);
    if (!s || s->status == SubmissionStatus::kFinished || Clock::now() >= deadline) co_return s;
    co_await reg.wait(deadline);
    // Cancelled because the client left (see session()): answer what there is, unwaited.
    auto cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none) co_return store.get(id);
  }
}

asio::awaitable<Response> HttpServer::Impl::post_submission(const Request& req, const Query& q) {
  if (auto e = q.only({"wait", "encoding"})) co_return error_response(*e);
  const auto wait = wait_requested(q);
  if (!wait) co_return error_response(wait.error());
  const auto base64 = base64_requested(q);
  if (!base64) co_return error_response(base64.error());
  if (!is_json_content_type(req[http::field::content_type]))
    co_return error_response(415, "unsupported_media_type", "",
                             "Content-Type must be application/json");
  const auto body = expand_runtime_fields(req.body(), [this] { return load_catalogue(store); });
  if (!body) co_return error_response(body.error());
  auto parsed = parse_submission_request(
      *body, config.limits, {.max_files = config.max_files, .max_tests = config.max_tests});
  if (!parsed) co_return error_response(parsed.error());

  Submission s;
  s.id = new_uuid();
  s.created_at_ms = now_unix_ms();
  s.status = SubmissionStatus::kQueued;
  s.request = std::move(*parsed);
  // Registered before the insert: the executor may finish it before we look.
  std::unique_ptr<ChangeWaiters::Registration> reg;
  const auto deadline = Clock::now() + std::chrono::milliseconds(config.max_wait_ms);
  if (*wait) reg = waiters->add(s.id, co_await asio::this_coro::executor);
  // QueueFullError and StoreError: see handle(). With ?wait=true the answer comes after the
  // run, and one fsync then covers the insert and the result (sync_committed below); the
  // io thread does not sit in an fsync of its own meanwhile.
  if (*wait)
    store.insert_unsynced(s, config.max_queue);
  else
    store.insert(s, config.max_queue);
  const std::string location = fmt::format("/api/v1/submissions/{}", s.id);

  if (!*wait) {
    Response res =
        json_response(http::status::accepted, json::object{{"id", s.id}, {"status", "QUEUED"}});
    res.set(http::field::location, location);
    co_return res;
  }
  std::optional<Submission> now = co_await read_until_finished(s.id, *reg, deadline);
  // Whatever is answered (200 with the result, or 202 past the wait bound) is on disk first.
  store.sync_committed();
  if (!now) co_return error_response(404, "not_found", "", "submission " + s.id + " disappeared");
  const bool finished = now->status == SubmissionStatus::kFinished;
  Response res = json_response(finished ? http::status::ok : http::status::accepted,
                               submission_to_json(*now, *base64));
  res.set(http::field::location, location);
  co_return res;
}

asio::awaitable<Response> HttpServer::Impl::get_submission(const std::string& id, const Query& q) {
  if (auto e = q.only({"wait", "encoding"})) co_return error_response(*e);
  const auto wait = wait_requested(q);
  if (!wait) co_return error_response(wait.error());
  const auto base64 = base64_requested(q);
  if (!base64) co_return error_response(base64.error());
  std::optional<Submission> s;
  if (*wait) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(config.max_wait_ms);
    auto reg = waiters->add(id, co_await asio::this_coro::executor);
    s = co_await read_until_finished(id, *reg, deadline);
  } else {
    s = store.get(id);
  }
  if (!s) co_return error_response(404, "not_found", "", "no submission with id " + id);
  co_return json_response(http::status::ok, submission_to_json(*s, *base64));
}

Response HttpServer::Impl::delete_submission(const std::string& id, const Query& q) {
  if (auto e = q.only({"encoding"})) return error_response(*e);
  const auto base64 = base64_requested(q);
  if (!base64) return error_response(base64.error());
  switch (store.cancel(id)) {
    case CancelOutcome::kNotFound:
      return error_response(404, "not_found", "", "no submission with id " + id);
    case CancelOutcome::kAlreadyFinished:
      return error_response(409, "already_finished", "",
                            "submission " + id + " had already finished");
    case CancelOutcome::kCancelled:
      break;
  }
  std::optional<Submission> s = store.get(id);
  if (!s) return error_response(404, "not_found", "", "no submission with id " + id);
  return json_response(http::status::ok, submission_to_json(*s, *base64));
}

Response HttpServer::Impl::list_submissions(const Query& q) {
  if (auto e = q.only({"status", "limit", "cursor", "encoding"})) return error_response(*e);
  const auto base64 = base64_requested(q);
  if (!base64) return error_response(base64.error());
  std::optional<SubmissionStatus> status;
  if (const std::string* v = q.find("status")) {
    status = parse_status(*v);
    if (!status)
      return error_response(400, "invalid_request", "status",
                            "must be one of QUEUED, SETTING_UP_ENVIRONMENT, BUILDING, COMPILING, "
                            "RUNNING, FINISHED");
  }
  int limit = kDefaultListLimit;
  if (const std::string* v = q.find("limit")) {
    const bool digits =
        !v->empty() && v->size() <= 4 && v->find_first_not_of("0123456789") == std::string::npos;
    limit = digits ? std::stoi(*v) : 0;
    if (limit < 1 || limit > kMaxListLimit)
      return error_response(400, "invalid_request", "limit",
                            fmt::format("must be an integer from 1 to {}", kMaxListLimit));
  }
  std::optional<std::string> cursor;
  if (const std::string* v = q.find("cursor")) cursor = *v;
  SubmissionPage page;
  try {
    page = store.list(status, limit, cursor);
  } catch (const std::invalid_argument&) {
    return error_response(400, "invalid_request", "cursor", "is not a cursor this server produced");
  }
  json::array items;
  for (const auto& s : page.submissions) items.push_back(submission_to_json(s, *base64));
  json::object body;
  body["submissions"] = std::move(items);
  body["next_cursor"] = page.next_cursor ? json::value(*page.next_cursor) : json::value(nullptr);
  return json_response(http::status::ok, body);
}

Response HttpServer::Impl::info() {
  json::object limits;
  for (Stage s : kLimitedStages) {
    json::object per_limit;
    for (std::string_view name : kLimitNames) {
      per_limit[name] = json::object{{"default", *limit_field(config.limits.default_for(s), name)},
                                     {"max", *limit_field(config.limits.max_for(s), name)}};
    }
    limits[stage_name(s)] = std::move(per_limit);
  }
  json::object body;
  body["version"] = config.version;
  body["limits"] = std::move(limits);
  body["max_body_bytes"] = config.max_body_bytes;
  body["max_files"] = config.max_files;
  body["max_tests"] = config.max_tests;
  body["max_wait_ms"] = config.max_wait_ms;
  body["max_queue"] = config.max_queue;
  body["max_connections"] = config.max_connections;
  body["retention_seconds"] =
      config.retention
          ? json::value(std::chrono::duration_cast<std::chrono::seconds>(*config.retention).count())
          : json::value(nullptr);
  body["auth"] = !config.auth_tokens.empty();
  body["dependencies"] = deps != nullptr;
  // The host's capabilities; the server's own keys above win a name clash.
  for (const auto& kv : config.features)
    if (!body.contains(kv.key())) body[kv.key()] = kv.value();
  return json_response(http::status::ok, body);
}

Response HttpServer::Impl::metrics_text() {
  std::string out;
  out += "# HELP cutor_submissions Stored submissions by status.\n";
  out += "# TYPE cutor_submissions gauge\n";
  std::map<std::string, int64_t> by_status;
  for (auto st : {SubmissionStatus::kQueued, SubmissionStatus::kSettingUpEnvironment,
                  SubmissionStatus::kBuilding, SubmissionStatus::kCompiling,
                  SubmissionStatus::kRunning, SubmissionStatus::kFinished})
    by_status[std::string(status_name(st))] = 0;
  for (const auto& [name, n] : store.count_by_status()) by_status[name] = n;
  for (const auto& [name, n] : by_status)
    out += fmt::format("cutor_submissions{{status=\"{}\"}} {}\n", name, n);

  out += "# HELP cutor_submissions_result Finished submissions by result.\n";
  out += "# TYPE cutor_submissions_result gauge\n";
  std::map<std::string, int64_t> by_result;
  for (int r = 0; r < kResultCount; ++r)
    by_result[std::string(result_name(static_cast<Result>(r)))] = 0;
  for (const auto& [name, n] : store.count_by_result()) by_result[name] = n;
  for (const auto& [name, n] : by_result)
    out += fmt::format("cutor_submissions_result{{result=\"{}\"}} {}\n", name, n);

  out += "# HELP cutor_queue_depth Unfinished submissions (queued or running).\n";
  out += "# TYPE cutor_queue_depth gauge\n";
  out += fmt::format("cutor_queue_depth {}\n", store.count_unfinished());
  out += "# HELP cutor_http_long_polls Requests waiting in ?wait=true.\n";
  out += "# TYPE cutor_http_long_polls gauge\n";
  out += fmt::format("cutor_http_long_polls {}\n", waiters->size());
  out += metrics.render();
  if (config.extra_metrics_text) out += config.extra_metrics_text();

  Response res{http::status::ok, 11};
  res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  res.set(http::field::cache_control, "no-store");
  res.body() = std::move(out);
  return res;
}

asio::awaitable<std::optional<Submission>> HttpServer::Impl::insert_and_wait(const Submission& s) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(config.max_wait_ms);
  auto reg = waiters->add(s.id, co_await asio::this_coro::executor);
  store.insert_unsynced(s, config.max_queue);
  std::optional<Submission> now = co_await read_until_finished(s.id, *reg, deadline);
  store.sync_committed();
  co_return now;
}

asio::awaitable<Response> HttpServer::Impl::piston_execute(const Request& req) {
  const auto piston_error = [](const PistonError& e) {
    return json_response(static_cast<http::status>(e.http_status), piston_error_json(e));
  };
  // piston-client 1.0.2 (node-fetch with a string body) sends text/plain, other clients
  // none: both are read as JSON here.
  const std::string_view type = req[http::field::content_type];
  if (!type.empty() && !is_json_content_type(type) &&
      !iequals_ascii(trim(type.substr(0, type.find(';'))), "text/plain"))
    co_return piston_error({415, "Content-Type must be application/json"});
  auto job =
      parse_piston_execute(req.body(), load_catalogue(store), config.limits, config.max_files);
  if (!job) co_return piston_error(job.error());
  Submission s;
  s.id = new_uuid();
  s.created_at_ms = now_unix_ms();
  s.request = job->request;
  std::optional<Submission> done = co_await insert_and_wait(s);
  if (!done || done->status != SubmissionStatus::kFinished) {
    store.cancel(s.id);
    co_return piston_error(
        {500, fmt::format("submission {} did not finish within {} ms", s.id, config.max_wait_ms)});
  }
  Response res = json_response(http::status::ok, piston_result(*job, *done));
  res.set(http::field::location, "/api/v1/submissions/" + s.id);
  co_return res;
}

Response HttpServer::Impl::runtimes_endpoint(const Request& req,
                                             const std::vector<std::string_view>& parts) {
  const auto method = req.method();
  if (parts.size() == 5) {
    if (method != http::verb::delete_) {
      Response res = error_response(405, "method_not_allowed", "", "allowed methods: DELETE");
      res.set(http::field::allow, "DELETE");
      return res;
    }
    auto removed = remove_runtime(store, std::string(parts[3]), std::string(parts[4]));
    if (!removed) return error_response(removed.error());
    return Response{http::status::no_content, 11};
  }
  if (method == http::verb::get)
    return json_response(http::status::ok, runtimes_to_json(load_catalogue(store)));
  if (method != http::verb::post) {
    Response res = error_response(405, "method_not_allowed", "", "allowed methods: GET, POST");
    res.set(http::field::allow, "GET, POST");
    return res;
  }
  if (!is_json_content_type(req[http::field::content_type]))
    return error_response(415, "unsupported_media_type", "",
                          "Content-Type must be application/json");
  auto added = add_runtime(store, req.body(), deps);
  if (!added) return error_response(added.error());
  return json_response(http::status::created, *added);
}

Response HttpServer::Impl::list_dependencies() {
  json::array items;
  for (const auto& d : deps->list()) items.push_back(dependency_to_json(d));
  return json_response(http::status::ok, json::object{{"dependencies", std::move(items)}});
}

Response HttpServer::Impl::post_dependency(const Request& req) {
  if (!is_json_content_type(req[http::field::content_type]))
    return error_response(415, "unsupported_media_type", "",
                          "Content-Type must be application/json");
  boost::system::error_code ec;
  json::value doc = json::parse(req.body(), ec);
  if (ec)
    return error_response(400, "invalid_json", "",
                          "request body is not valid JSON: " + ec.message());
  if (auto dup = find_duplicate_json_key(req.body()))
    return error_response(400, "invalid_request", *dup, "appears twice in one object");
  if (!doc.is_object())
    return error_response(400, "invalid_request", "", "request body must be a JSON object");
  for (const auto& kv : doc.get_object())
    if (kv.key() != "nix")
      return error_response(400, "invalid_request", std::string(kv.key()), "unknown field");
  const json::value* nix = doc.get_object().if_contains("nix");
  if (nix == nullptr) return error_response(400, "invalid_request", "nix", "is required");
  if (!nix->is_string()) return error_response(400, "invalid_request", "nix", "must be a string");
  if (nix->get_string().empty())
    return error_response(400, "invalid_request", "nix", "must not be empty");
  try {
    return json_response(http::status::accepted,
                         dependency_to_json(deps->build_ahead(std::string(nix->get_string()))));
  } catch (const std::invalid_argument& e) {
    return error_response(400, "invalid_request", "nix", e.what());
  }
}

Response HttpServer::Impl::delete_dependency(const std::string& key) {
  DependencyEntry entry;
  switch (deps->evict(key, entry)) {
    case EvictOutcome::kStarted:
      return json_response(http::status::accepted, dependency_to_json(entry));
    case EvictOutcome::kInUse:
      return error_response(409, "in_use", "",
                            "environment " + key + " is needed by an unfinished submission");
    case EvictOutcome::kNotFound:
      break;
  }
  return error_response(404, "not_found", "", "no cached environment with key " + key);
}

HttpServer::HttpServer(std::string host, uint16_t port, SubmissionStore& store,
                       HttpServerConfig config, DependencyService* dependencies)
    : impl_(std::make_unique<Impl>(std::move(host), port, store, std::move(config), dependencies)) {
}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::start() {
  impl_->start();
}

uint16_t HttpServer::port() const {
  return impl_->bound_port.load();
}

void HttpServer::stop() {
  impl_->stop();
}

}  // namespace cutor
