// HttpServer over real HTTP on 127.0.0.1 with an in-memory SubmissionStore.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "api/http_server.h"
#include "api/text_encoding.h"

namespace cutor {
namespace {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// An in-memory store with the real one's contract, including listeners.
class FakeStore : public SubmissionStore {
 public:
  std::atomic<bool> fail{false};  // every call throws StoreError

  int64_t insert(const Submission& s, int64_t max_queue) override {
    check();
    int64_t seq;
    {
      std::lock_guard lock(mu_);
      if (max_queue > 0 && unfinished_locked() >= max_queue) throw QueueFullError("queue full");
      seq = ++next_seq_;
      Submission copy = s;
      copy.seq = seq;
      rows_[s.id] = copy;
    }
    tell(s.id, SubmissionStatus::kQueued);
    return seq;
  }
  std::optional<Submission> get(const std::string& id) override {
    check();
    std::lock_guard lock(mu_);
    auto it = rows_.find(id);
    if (it == rows_.end()) return std::nullopt;
    return it->second;
  }
  // noinline: GCC 12 at -O3 inlines this into a lambda passing std::nullopt and then
  // warns (falsely) that the empty optional's string may be read uninitialised.
  [[gnu::noinline]] SubmissionPage list(std::optional<SubmissionStatus> status, int limit,
                                        const std::optional<std::string>& cursor) override {
    check();
    int64_t below = INT64_MAX;
    if (cursor) {
      if (cursor->empty() || cursor->find_first_not_of("0123456789") != std::string::npos ||
          cursor->size() > 18)
        throw std::invalid_argument("bad cursor");
      below = std::stoll(*cursor);
    }
    std::lock_guard lock(mu_);
    std::vector<const Submission*> all;
    for (const auto& [id, s] : rows_)
      if (s.seq < below && (!status || s.status == *status)) all.push_back(&s);
    std::sort(all.begin(), all.end(), [](auto* a, auto* b) { return a->seq > b->seq; });
    SubmissionPage page;
    for (size_t i = 0; i < all.size() && static_cast<int>(i) < limit; ++i)
      page.submissions.push_back(*all[i]);
    if (static_cast<int>(all.size()) > limit)
      page.next_cursor = std::to_string(page.submissions.back().seq);
    return page;
  }
  std::optional<Submission> claim_next(std::stop_token) override { return std::nullopt; }
  bool set_status(const std::string& id, SubmissionStatus status) override {
    {
      std::lock_guard lock(mu_);
      auto it = rows_.find(id);
      if (it == rows_.end() || it->second.status == SubmissionStatus::kFinished) return false;
      it->second.status = status;
    }
    tell(id, status);
    return true;
  }
  bool set_stage(const std::string& id, Stage stage, const StageResult& r) override {
    SubmissionStatus status;
    {
      std::lock_guard lock(mu_);
      auto it = rows_.find(id);
      if (it == rows_.end() || it->second.status == SubmissionStatus::kFinished) return false;
      it->second.stage(stage) = r;
      status = it->second.status;
    }
    tell(id, status);
    return true;
  }
  bool write_tests(const std::string& id, const std::vector<TestWrite>& tests) override {
    SubmissionStatus status;
    {
      std::lock_guard lock(mu_);
      auto it = rows_.find(id);
      if (it == rows_.end() || it->second.status == SubmissionStatus::kFinished) return false;
      Submission& s = it->second;
      s.tests.resize(s.request.tests.size());
      for (const TestWrite& w : tests) s.tests.at(w.index) = w.result;
      status = s.status;
    }
    tell(id, status);
    return true;
  }
  int64_t put_runtime(const StoredRuntime& r) override {
    std::lock_guard lock(mu_);
    auto [it, inserted] = runtimes_.try_emplace({r.name, r.version}, r);
    if (inserted) it->second.id = ++next_runtime_id_;
    it->second.definition_json = r.definition_json;
    return it->second.id;
  }
  std::vector<StoredRuntime> list_runtimes() override {
    std::lock_guard lock(mu_);
    std::vector<StoredRuntime> out;
    for (const auto& [key, r] : runtimes_) out.push_back(r);
    return out;
  }
  bool delete_runtime(const std::string& name, const std::string& version) override {
    std::lock_guard lock(mu_);
    return runtimes_.erase({name, version}) > 0;
  }
  bool finish(const std::string& id, Result result) override {
    {
      std::lock_guard lock(mu_);
      auto it = rows_.find(id);
      if (it == rows_.end() || it->second.status == SubmissionStatus::kFinished) return false;
      Submission& s = it->second;
      s.status = SubmissionStatus::kFinished;
      s.result = result;
      s.finished_at_ms = now_unix_ms();
      for (auto& st : s.stages)
        if (st.status == StageStatus::kPending || st.status == StageStatus::kRunning)
          st.status = StageStatus::kSkipped;
    }
    tell(id, SubmissionStatus::kFinished);
    return true;
  }
  CancelOutcome cancel(const std::string& id) override {
    check();
    {
      std::lock_guard lock(mu_);
      auto it = rows_.find(id);
      if (it == rows_.end()) return CancelOutcome::kNotFound;
      if (it->second.status == SubmissionStatus::kFinished) return CancelOutcome::kAlreadyFinished;
    }
    finish(id, Result::kCancelled);
    return CancelOutcome::kCancelled;
  }
  int64_t requeue_unfinished() override { return 0; }
  int64_t delete_finished_before(int64_t finished_before_ms, int limit) override {
    check();
    std::lock_guard lock(mu_);
    int64_t n = 0;
    for (auto it = rows_.begin(); it != rows_.end() && n < limit;) {
      const bool expired = it->second.status == SubmissionStatus::kFinished &&
                           it->second.finished_at_ms &&
                           *it->second.finished_at_ms < finished_before_ms;
      it = expired ? (++n, rows_.erase(it)) : std::next(it);
    }
    return n;
  }
  int64_t count_all() override {
    std::lock_guard lock(mu_);
    return static_cast<int64_t>(rows_.size());
  }
  int64_t count_unfinished() override {
    check();
    std::lock_guard lock(mu_);
    return unfinished_locked();
  }
  std::vector<std::pair<std::string, int64_t>> count_by_status() override {
    check();
    std::lock_guard lock(mu_);
    std::map<std::string, int64_t> m;
    for (const auto& [id, s] : rows_) ++m[std::string(status_name(s.status))];
    return {m.begin(), m.end()};
  }
  std::vector<std::pair<std::string, int64_t>> count_by_result() override {
    check();
    std::lock_guard lock(mu_);
    std::map<std::string, int64_t> m;
    for (const auto& [id, s] : rows_)
      if (s.result) ++m[std::string(result_name(*s.result))];
    return {m.begin(), m.end()};
  }
  int add_listener(ChangeListener l) override {
    std::lock_guard lock(listeners_mu_);
    listeners_[++next_handle_] = std::move(l);
    return next_handle_;
  }
  void remove_listener(int handle) override {
    std::lock_guard lock(listeners_mu_);
    listeners_.erase(handle);
  }
  void wake_all() override {}

  size_t listener_count() {
    std::lock_guard lock(listeners_mu_);
    return listeners_.size();
  }
  // Inserts a queued submission directly, as another process would.
  std::string add_queued() {
    Submission s;
    s.id = new_uuid();
    s.created_at_ms = now_unix_ms();
    s.request.files = {{"run.sh", "echo"}};
    insert(s, 0);
    return s.id;
  }

 private:
  void check() {
    if (fail) throw StoreError("disk I/O error (fake)");
  }
  int64_t unfinished_locked() {
    int64_t n = 0;
    for (const auto& [id, s] : rows_) n += s.status != SubmissionStatus::kFinished;
    return n;
  }
  void tell(const std::string& id, SubmissionStatus status) {
    std::lock_guard lock(listeners_mu_);
    for (auto& [h, l] : listeners_) l(id, status);
  }

  std::mutex mu_;
  std::map<std::string, Submission> rows_;
  int64_t next_seq_ = 0;
  std::map<std::pair<std::string, std::string>, StoredRuntime> runtimes_;
  int64_t next_runtime_id_ = 0;
  std::mutex listeners_mu_;
  std::map<int, ChangeListener> listeners_;
  int next_handle_ = 0;
};

class FakeDependencies : public DependencyService {
 public:
  std::vector<DependencyEntry> list() override {
    DependencyEntry e;
    e.key = "abc123";
    e.state = DependencyState::kReady;
    e.store_path = "/nix/store/xyz-env";
    e.packages = {{"python3", "3.11.6", "/nix/store/aaa-python3-3.11.6", 1000}};
    e.size_bytes = 1000;
    e.created_at_ms = 1795626000000;
    e.use_count = 2;
    return {e};
  }
  DependencyEntry build_ahead(const std::string& nix) override {
    if (nix == "refuse") throw std::invalid_argument("not a Nix expression");
    last_nix = nix;
    DependencyEntry e;
    e.key = "new1";
    e.created_at_ms = 1795626000000;
    return e;
  }
  EvictOutcome evict(const std::string& key, DependencyEntry& entry) override {
    if (key == "abc123") {
      entry = list().front();
      entry.state = DependencyState::kEvicting;
      return EvictOutcome::kStarted;
    }
    if (key == "busy") return EvictOutcome::kInUse;
    return EvictOutcome::kNotFound;
  }
  std::string last_nix;
};

struct Reply {
  int status = 0;
  http::fields headers;
  std::string body;
  json::value json() const { return json::parse(body); }
  std::string error_code() const { return std::string(json().at("error").at("code").as_string()); }
  std::string error_field() const {
    const json::value doc = json();
    const auto& e = doc.at("error").as_object();
    return e.at("field").is_null() ? "" : std::string(e.at("field").as_string());
  }
};

class ApiHttpTest : public ::testing::Test {
 protected:
  void start(HttpServerConfig config = {}, DependencyService* deps = nullptr) {
    server_ = std::make_unique<HttpServer>("127.0.0.1", 0, store_, std::move(config), deps);
    server_->start();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    if (server_) server_->stop();
    EXPECT_EQ(store_.listener_count(), 0u);  // the server unregistered its listener
  }

  Reply send(http::verb verb, const std::string& target, const std::string& body = "",
             std::map<std::string, std::string> headers = {}) {
    asio::io_context ioc;
    tcp::socket sock(ioc);
    sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!body.empty() || verb == http::verb::post) {
      if (!headers.contains("Content-Type")) req.set(http::field::content_type, "application/json");
      req.body() = body;
      req.prepare_payload();
    }
    for (const auto& [k, v] : headers)
      if (!v.empty()) req.set(k, v);
    for (const auto& [k, v] : headers)
      if (v.empty()) req.erase(k);
    http::write(sock, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    http::read(sock, buf, parser);
    Reply r;
    r.status = parser.get().result_int();
    r.headers = parser.get().base();
    r.body = parser.get().body();
    return r;
  }
  Reply get(const std::string& target, std::map<std::string, std::string> headers = {}) {
    return send(http::verb::get, target, "", std::move(headers));
  }
  Reply post(const std::string& target, const std::string& body,
             std::map<std::string, std::string> headers = {}) {
    return send(http::verb::post, target, body, std::move(headers));
  }

  // Raw bytes in, everything until the server closes out (bounded by `wait`).
  std::string raw_exchange(const std::string& bytes, std::chrono::milliseconds wait = 5000ms) {
    asio::io_context ioc;
    tcp::socket sock(ioc);
    sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    asio::write(sock, asio::buffer(bytes));
    std::string out;
    const auto deadline = Clock::now() + wait;
    std::array<char, 4096> chunk;
    while (Clock::now() < deadline) {
      boost::system::error_code ec;
      if (sock.available(ec) == 0) {
        pollfd pfd{sock.native_handle(), POLLIN, 0};
        if (::poll(&pfd, 1, 50) == 0) continue;
      }
      const size_t n = sock.read_some(asio::buffer(chunk), ec);
      if (ec) break;
      out.append(chunk.data(), n);
    }
    return out;
  }

  FakeStore store_;
  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
};

const std::string kValid =
    R"({"files":[{"name":"run.sh","content":"echo hi"},{"name":"d.bin","content":"AAEC","encoding":"base64"}],"stdin":"x"})";

TEST_F(ApiHttpTest, PostAnswers202WithLocationAndStores) {
  start();
  Reply r = post("/api/v1/submissions", kValid);
  ASSERT_EQ(r.status, 202) << r.body;
  const json::object body = r.json().as_object();
  const std::string id(body.at("id").as_string());
  EXPECT_EQ(body.at("status").as_string(), "QUEUED");
  EXPECT_EQ(body.size(), 2u);
  EXPECT_EQ(r.headers[http::field::location], "/api/v1/submissions/" + id);
  EXPECT_EQ(r.headers[http::field::content_type], "application/json");
  auto stored = store_.get(id);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->request.find_file("d.bin")->content, std::string("\0\1\2", 3));
  EXPECT_EQ(stored->request.stdin_data, "x");
  EXPECT_GT(stored->created_at_ms, 0);

  Reply g = get("/api/v1/submissions/" + id);
  ASSERT_EQ(g.status, 200);
  EXPECT_EQ(g.json().at("id").as_string(), id);
  EXPECT_EQ(g.json().at("status").as_string(), "QUEUED");
  EXPECT_TRUE(g.json().at("result").is_null());
}

TEST_F(ApiHttpTest, ContentTypeMustBeJson) {
  start();
  EXPECT_EQ(post("/api/v1/submissions", kValid, {{"Content-Type", "text/plain"}}).status, 415);
  Reply none = post("/api/v1/submissions", kValid, {{"Content-Type", ""}});
  EXPECT_EQ(none.status, 415);
  EXPECT_EQ(none.error_code(), "unsupported_media_type");
  EXPECT_EQ(post("/api/v1/submissions", kValid, {{"Content-Type", "application/jsonx"}}).status,
            415);
  EXPECT_EQ(
      post("/api/v1/submissions", kValid, {{"Content-Type", "Application/JSON; charset=utf-8"}})
          .status,
      202);
  EXPECT_EQ(store_.count_all(), 1);
}

TEST_F(ApiHttpTest, BadRequestsStoreNothing) {
  start();
  Reply r = post("/api/v1/submissions",
                 R"({"files":[{"name":"run.sh","content":""},{"name":"../x","content":""}]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.error_code(), "invalid_request");
  EXPECT_EQ(r.error_field(), "files[1].name");
  EXPECT_EQ(post("/api/v1/submissions", "{").error_code(), "invalid_json");
  EXPECT_EQ(store_.count_all(), 0);
}

TEST_F(ApiHttpTest, BodyOverTheLimitIs413) {
  HttpServerConfig config;
  config.max_body_bytes = 1024;
  start(config);
  Reply r = post("/api/v1/submissions", std::string(4096, ' '));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.error_code(), "body_too_large");
  // Chunked bodies are counted as they arrive.
  const std::string chunk(1000, ' ');
  std::string raw =
      "POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) raw += "3e8\r\n" + chunk + "\r\n";
  raw += "0\r\n\r\n";
  const std::string out = raw_exchange(raw);
  EXPECT_TRUE(out.starts_with("HTTP/1.1 413")) << out.substr(0, 100);
  EXPECT_EQ(store_.count_all(), 0);
  // The server still answers.
  EXPECT_EQ(get("/api/v1/health").status, 200);
}

TEST_F(ApiHttpTest, DefaultBodyLimitIs16MiB) {
  start();
  Reply r = post("/api/v1/submissions", std::string(16 * 1024 * 1024 + 1, ' '));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.headers[http::field::content_type], "application/json");
}

TEST_F(ApiHttpTest, UnknownAndMalformedIdsAre404) {
  start();
  EXPECT_EQ(get("/api/v1/submissions/6f1c0e4e-2b1a-4c7e-9d3f-0a1b2c3d4e5f").error_code(),
            "not_found");
  EXPECT_EQ(get("/api/v1/submissions/not-a-uuid").status, 404);
  EXPECT_EQ(get("/api/v1/submissions/..%2F..%2Fetc").status, 404);
  EXPECT_EQ(get("/api/v1/submissions/6F1C0E4E-2B1A-4C7E-9D3F-0A1B2C3D4E5F").status, 404);
  EXPECT_EQ(
      send(http::verb::delete_, "/api/v1/submissions/6f1c0e4e-2b1a-4c7e-9d3f-0a1b2c3d4e5f").status,
      404);
  EXPECT_EQ(get("/api/v1/nothing").status, 404);
  EXPECT_EQ(get("/nothing").status, 404);  // "/" is the playground's page
  EXPECT_EQ(get("/api/v1/submissions/a/b").status, 404);
}

TEST_F(ApiHttpTest, WrongMethodIs405WithAllow) {
  start();
  Reply r = send(http::verb::put, "/api/v1/submissions");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.error_code(), "method_not_allowed");
  EXPECT_EQ(r.headers[http::field::allow], "GET, POST");
  EXPECT_EQ(send(http::verb::post, "/api/v1/health").headers[http::field::allow], "GET");
  EXPECT_EQ(send(http::verb::post, "/api/v1/submissions/" + store_.add_queued())
                .headers[http::field::allow],
            "GET, DELETE");
  EXPECT_EQ(send(http::verb::delete_, "/api/v1/info").status, 405);
  EXPECT_EQ(send(http::verb::post, "/metrics", "{}").status, 405);
}

TEST_F(ApiHttpTest, AuthRequiresAKnownBearerTokenExceptForHealth) {
  HttpServerConfig config;
  config.auth_tokens = {"s3cret", "other-token"};
  start(config);
  Reply none = get("/api/v1/info");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.error_code(), "unauthorized");
  EXPECT_TRUE(std::string(none.headers[http::field::www_authenticate]).starts_with("Bearer"));
  EXPECT_EQ(get("/api/v1/info", {{"Authorization", "Bearer wrong"}}).status, 401);
  EXPECT_EQ(get("/api/v1/info", {{"Authorization", "Bearer s3cre"}}).status, 401);
  EXPECT_EQ(get("/api/v1/info", {{"Authorization", "Bearer s3cret2"}}).status, 401);
  EXPECT_EQ(get("/api/v1/info", {{"Authorization", "Basic s3cret"}}).status, 401);
  EXPECT_EQ(get("/api/v1/info", {{"Authorization", "s3cret"}}).status, 401);
  EXPECT_EQ(get("/api/v1/info", {{"Authorization", "Bearer "}}).status, 401);
  EXPECT_EQ(get("/api/v1/info", {{"Authorization", "Bearer s3cret"}}).status, 200);
  EXPECT_EQ(get("/api/v1/info", {{"Authorization", "bearer other-token"}}).status, 200);
  EXPECT_EQ(post("/api/v1/submissions", kValid).status, 401);
  EXPECT_EQ(get("/metrics").status, 401);
  EXPECT_EQ(get("/api/v1/nothing").status, 401);  // routes are not revealed without a token
  EXPECT_EQ(store_.count_all(), 0);
  Reply health = get("/api/v1/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.json().at("status").as_string(), "ok");
  EXPECT_EQ(get("/api/v1/info").json().at("error").at("code").as_string(), "unauthorized");
  EXPECT_TRUE(
      get("/api/v1/info", {{"Authorization", "Bearer s3cret"}}).json().at("auth").as_bool());
}

TEST_F(ApiHttpTest, HealthNeverTouchesTheStore) {
  start();
  store_.fail = true;
  EXPECT_EQ(get("/api/v1/health").status, 200);
  Reply r = get("/api/v1/submissions/" + std::string("6f1c0e4e-2b1a-4c7e-9d3f-0a1b2c3d4e5f"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.error_code(), "store_unavailable");
  Reply p = post("/api/v1/submissions", kValid);
  EXPECT_EQ(p.status, 503);
  EXPECT_EQ(p.error_code(), "store_unavailable");
}

TEST_F(ApiHttpTest, QueueFullIs503WithRetryAfter) {
  HttpServerConfig config;
  config.max_queue = 2;
  start(config);
  EXPECT_EQ(post("/api/v1/submissions", kValid).status, 202);
  EXPECT_EQ(post("/api/v1/submissions", kValid).status, 202);
  Reply r = post("/api/v1/submissions", kValid);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.error_code(), "queue_full");
  EXPECT_EQ(r.headers[http::field::retry_after], "1");
  EXPECT_EQ(store_.count_all(), 2);
}

TEST_F(ApiHttpTest, WaitIsWokenByAChangeFromAnotherThread) {
  HttpServerConfig config;
  config.max_wait_ms = 20'000;
  start(config);
  const std::string id = store_.add_queued();
  std::thread executor([&] {
    std::this_thread::sleep_for(150ms);
    store_.set_status(id, SubmissionStatus::kRunning);  // not finished: keep waiting
    std::this_thread::sleep_for(150ms);
    StageResult run;
    run.status = StageStatus::kOk;
    run.code = 0;
    run.stdout_data = "done\n";
    store_.set_stage(id, Stage::kRun, run);
    store_.finish(id, Result::kOk);
  });
  const auto t0 = Clock::now();
  Reply r = get("/api/v1/submissions/" + id + "?wait=true");
  const auto elapsed = Clock::now() - t0;
  executor.join();
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json().at("status").as_string(), "FINISHED");
  EXPECT_EQ(r.json().at("result").as_string(), "OK");
  EXPECT_EQ(r.json().at("run").at("stdout").as_string(), "done\n");
  EXPECT_GE(elapsed, 290ms);
  EXPECT_LT(elapsed, 5s);
}

TEST_F(ApiHttpTest, WaitIsBoundedByMaxWait) {
  HttpServerConfig config;
  config.max_wait_ms = 300;
  start(config);
  const std::string id = store_.add_queued();
  const auto t0 = Clock::now();
  Reply r = get("/api/v1/submissions/" + id + "?wait=true");
  const auto elapsed = Clock::now() - t0;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json().at("status").as_string(), "QUEUED");
  EXPECT_GE(elapsed, 290ms);
  EXPECT_LT(elapsed, 3s);
  // POST ?wait=true past the bound: 202 with the whole submission.
  Reply p = post("/api/v1/submissions?wait=true", kValid);
  EXPECT_EQ(p.status, 202);
  EXPECT_EQ(p.json().at("status").as_string(), "QUEUED");
  EXPECT_TRUE(p.json().as_object().contains("run"));
  EXPECT_FALSE(std::string(p.headers[http::field::location]).empty());
}

TEST_F(ApiHttpTest, PostWaitReturnsTheFinishedSubmission) {
  HttpServerConfig config;
  config.max_wait_ms = 20'000;
  start(config);
  std::atomic<bool> stop{false};
  std::thread executor([&] {  // finishes whatever appears, like a worker would
    while (!stop) {
      auto page = store_.list(SubmissionStatus::kQueued, 10, std::nullopt);
      for (const auto& s : page.submissions) {
        StageResult run;
        run.status = StageStatus::kNonzeroExit;
        run.code = 3;
        run.stderr_data = "bad\xff";
        store_.set_stage(s.id, Stage::kRun, run);
        store_.finish(s.id, Result::kRuntimeError);
      }
      std::this_thread::sleep_for(5ms);
    }
  });
  Reply r = post("/api/v1/submissions?wait=true", kValid);
  Reply b = post("/api/v1/submissions?wait=true&encoding=base64", kValid);
  stop = true;
  executor.join();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json().at("result").as_string(), "RUNTIME_ERROR");
  EXPECT_EQ(r.json().at("run").at("code").as_int64(), 3);
  EXPECT_EQ(r.json().at("run").at("stderr").as_string(), "bad\xef\xbf\xbd");
  ASSERT_EQ(b.status, 200);
  EXPECT_EQ(*base64_decode(b.json().at("run").at("stderr").as_string()), "bad\xff");
}

TEST_F(ApiHttpTest, AThousandConcurrentWaitersAreWokenTogether) {
  HttpServerConfig config;
  config.max_wait_ms = 30'000;
  config.http_threads = 2;
  start(config);
  const std::string id = store_.add_queued();
  constexpr int kWaiters = 1000;
  asio::io_context ioc;
  std::vector<std::unique_ptr<tcp::socket>> socks;
  const std::string request =
      "GET /api/v1/submissions/" + id + "?wait=true HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int i = 0; i < kWaiters; ++i) {
    auto s = std::make_unique<tcp::socket>(ioc);
    s->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    asio::write(*s, asio::buffer(request));
    socks.push_back(std::move(s));
  }
  // Every request is parked: the metrics endpoint counts the long-polls.
  const auto deadline = Clock::now() + 10s;
  std::string metrics;
  while (Clock::now() < deadline) {
    metrics = get("/metrics").body;
    if (metrics.find("cutor_http_long_polls 1000\n") != std::string::npos) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_NE(metrics.find("cutor_http_long_polls 1000\n"), std::string::npos);
  const auto t0 = Clock::now();
  store_.finish(id, Result::kOk);
  int finished = 0;
  for (auto& s : socks) {
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(*s, buf, res);
    finished +=
        res.result_int() == 200 && json::parse(res.body()).at("status").as_string() == "FINISHED";
  }
  EXPECT_EQ(finished, kWaiters);
  EXPECT_LT(Clock::now() - t0, 10s);
}

TEST_F(ApiHttpTest, ListPagesNewestFirst) {
  start();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(store_.add_queued());
  store_.finish(ids[1], Result::kOk);
  Reply p1 = get("/api/v1/submissions?limit=2");
  ASSERT_EQ(p1.status, 200) << p1.body;
  const json::value p1_doc = p1.json();
  const auto& items = p1_doc.at("submissions").as_array();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].at("id").as_string(), ids[4]);
  EXPECT_EQ(items[1].at("id").as_string(), ids[3]);
  EXPECT_TRUE(items[0].as_object().contains("run"));  // whole submissions
  const std::string cursor(p1.json().at("next_cursor").as_string());
  Reply p2 = get("/api/v1/submissions?limit=2&cursor=" + cursor);
  ASSERT_EQ(p2.json().at("submissions").as_array().size(), 2u);
  EXPECT_EQ(p2.json().at("submissions").as_array()[0].at("id").as_string(), ids[2]);
  Reply p3 = get("/api/v1/submissions?limit=2&cursor=" +
                 std::string(p2.json().at("next_cursor").as_string()));
  ASSERT_EQ(p3.json().at("submissions").as_array().size(), 1u);
  EXPECT_TRUE(p3.json().at("next_cursor").is_null());
  Reply all = get("/api/v1/submissions");
  EXPECT_EQ(all.json().at("submissions").as_array().size(), 5u);
  Reply fin = get("/api/v1/submissions?status=FINISHED");
  ASSERT_EQ(fin.json().at("submissions").as_array().size(), 1u);
  EXPECT_EQ(fin.json().at("submissions").as_array()[0].at("id").as_string(), ids[1]);

  for (const char* bad : {"0", "1001", "-1", "abc", "", "1.5", "99999999999999999999"}) {
    Reply r = get(std::string("/api/v1/submissions?limit=") + bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(r.error_field(), "limit") << bad;
  }
  EXPECT_EQ(get("/api/v1/submissions?limit=1000").status, 200);
  EXPECT_EQ(get("/api/v1/submissions?status=DONE").error_field(), "status");
  EXPECT_EQ(get("/api/v1/submissions?status=queued").error_field(), "status");
  EXPECT_EQ(get("/api/v1/submissions?cursor=zzz").error_field(), "cursor");
  EXPECT_EQ(get("/api/v1/submissions?page=2").error_field(), "page");
  EXPECT_EQ(get("/api/v1/submissions?limit=1&limit=2").error_field(), "limit");
  EXPECT_EQ(get("/api/v1/submissions?encoding=hex").error_field(), "encoding");
}

TEST_F(ApiHttpTest, DeleteCancelsOnceThen409) {
  start();
  const std::string id = store_.add_queued();
  Reply r = send(http::verb::delete_, "/api/v1/submissions/" + id);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json().at("status").as_string(), "FINISHED");
  EXPECT_EQ(r.json().at("result").as_string(), "CANCELLED");
  EXPECT_EQ(r.json().at("run").at("status").as_string(), "SKIPPED");
  Reply again = send(http::verb::delete_, "/api/v1/submissions/" + id);
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.error_code(), "already_finished");
  EXPECT_EQ(send(http::verb::delete_, "/api/v1/submissions/" + new_uuid()).status, 404);
}

TEST_F(ApiHttpTest, QueryParametersAreChecked) {
  start();
  const std::string id = store_.add_queued();
  EXPECT_EQ(post("/api/v1/submissions?priority=high", kValid).error_field(), "priority");
  EXPECT_EQ(post("/api/v1/submissions?wait=yes", kValid).error_field(), "wait");
  EXPECT_EQ(get("/api/v1/submissions/" + id + "?encoding=utf16").error_field(), "encoding");
  EXPECT_EQ(get("/api/v1/submissions/" + id + "?wait=1").error_field(), "wait");
  EXPECT_EQ(get("/api/v1/submissions/" + id + "?wait=false").status, 200);
  EXPECT_EQ(get("/api/v1/submissions/" + id + "?encoding=base64").status, 200);
  EXPECT_EQ(get("/api/v1/info?x=1").status, 400);
  EXPECT_EQ(store_.count_all(), 1);
}

TEST_F(ApiHttpTest, InfoShape) {
  HttpServerConfig config;
  config.version = "9.9.9";
  config.max_queue = 77;
  config.features = json::object{{"sandbox", json::object{{"cgroup", "v1"}}}, {"version", "clash"}};
  start(config);
  Reply r = get("/api/v1/info");
  ASSERT_EQ(r.status, 200);
  const json::value doc = r.json();
  const auto& o = doc.as_object();
  EXPECT_EQ(o.at("version").as_string(), "9.9.9");
  EXPECT_EQ(o.at("max_body_bytes").as_int64(), 16 * 1024 * 1024);
  EXPECT_EQ(o.at("max_files").as_int64(), 1000);
  EXPECT_EQ(o.at("max_wait_ms").as_int64(), 60000);
  EXPECT_EQ(o.at("max_queue").as_int64(), 77);
  EXPECT_FALSE(o.at("auth").as_bool());
  EXPECT_EQ(o.at("sandbox").at("cgroup").as_string(), "v1");
  const LimitTable t = LimitTable::builtin();
  const auto& limits = o.at("limits").as_object();
  EXPECT_EQ(limits.size(), 3u);
  EXPECT_FALSE(limits.contains("build"));
  for (Stage s : kLimitedStages) {
    for (auto name : kLimitNames) {
      const auto& l = limits.at(stage_name(s)).at(name);
      EXPECT_EQ(l.at("default").as_int64(), *limit_field(t.default_for(s), name));
      EXPECT_EQ(l.at("max").as_int64(), *limit_field(t.max_for(s), name));
    }
  }
}

TEST_F(ApiHttpTest, MetricsText) {
  HttpServerConfig config;
  config.extra_metrics_text = [] { return std::string("cutor_stage_duration_seconds_count 3\n"); };
  start(config);
  store_.add_queued();
  const std::string done = store_.add_queued();
  store_.finish(done, Result::kCompileError);
  get("/api/v1/nothing");  // one 404
  Reply r = get("/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(
      std::string(r.headers[http::field::content_type]).starts_with("text/plain; version=0.0.4"));
  const std::string& m = r.body;
  for (const char* line :
       {"cutor_submissions{status=\"QUEUED\"} 1\n", "cutor_submissions{status=\"FINISHED\"} 1\n",
        "cutor_submissions{status=\"RUNNING\"} 0\n",
        "cutor_submissions_result{result=\"COMPILE_ERROR\"} 1\n",
        "cutor_submissions_result{result=\"OK\"} 0\n", "cutor_queue_depth 1\n",
        "cutor_http_requests_total{code=\"404\"} 1\n",
        "# TYPE cutor_http_request_duration_seconds histogram\n",
        "cutor_http_request_duration_seconds_bucket{le=\"+Inf\"} 1\n",
        "cutor_http_request_duration_seconds_count 1\n",
        "cutor_stage_duration_seconds_count 3\n"}) {
    EXPECT_NE(m.find(line), std::string::npos) << line << "\nin:\n" << m;
  }
}

TEST_F(ApiHttpTest, KeepAliveAndPipelining) {
  start();
  const std::string two =
      "GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /api/v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const std::string out = raw_exchange(two);
  const size_t first = out.find("HTTP/1.1 200");
  const size_t second = out.find("HTTP/1.1 404");
  EXPECT_EQ(first, 0u) << out;
  EXPECT_NE(second, std::string::npos) << out;
  EXPECT_LT(first, second);
}

TEST_F(ApiHttpTest, ExpectContinueIsAnswered) {
  start();
  const std::string body = kValid;
  const std::string out = raw_exchange(
      "POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Expect: 100-continue\r\nConnection: close\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_TRUE(out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202")) << out;
  EXPECT_EQ(store_.count_all(), 1);
}

TEST_F(ApiHttpTest, ErrorsAlwaysHaveTheErrorShape) {
  start();
  for (const Reply& r : {get("/nope"), send(http::verb::patch, "/api/v1/info"),
                         post("/api/v1/submissions", "[]"), get("/api/v1/submissions?limit=x")}) {
    EXPECT_EQ(r.headers[http::field::content_type], "application/json");
    const json::value doc = r.json();
    ASSERT_TRUE(doc.at("error").is_object()) << r.body;
    EXPECT_TRUE(doc.at("error").as_object().contains("code"));
    EXPECT_TRUE(doc.at("error").as_object().contains("message"));
    EXPECT_TRUE(doc.at("error").as_object().contains("field"));
  }
}

TEST_F(ApiHttpTest, MalformedHttpIs400AndClosed) {
  start();
  const std::string out = raw_exchange("BLAH\r\n\r\n");
  EXPECT_TRUE(out.starts_with("HTTP/1.1 400")) << out;
  EXPECT_NE(out.find("\"bad_request\""), std::string::npos);
  EXPECT_TRUE(raw_exchange("GET / HTTP/9.9\r\n\r\n").starts_with("HTTP/1.1 400"));
  EXPECT_TRUE(raw_exchange(std::string("\x16\x03\x01\x02\x00\x01", 6)).starts_with("HTTP/1.1 400"));
  const std::string huge =
      "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(20000, 'a') + "\r\n\r\n";
  EXPECT_TRUE(raw_exchange(huge).starts_with("HTTP/1.1 431"));
}

TEST_F(ApiHttpTest, SilentOrSlowClientsAreDropped) {
  HttpServerConfig config;
  config.read_timeout = 300ms;
  config.keep_alive_timeout = 300ms;
  start(config);
  const auto t0 = Clock::now();
  // A request that stops half-way is dropped once the read timeout passes.
  EXPECT_EQ(raw_exchange("GET /api/v1/health HTTP/1.1\r\nHo", 5s), "");
  EXPECT_LT(Clock::now() - t0, 3s);
  const auto t1 = Clock::now();
  EXPECT_EQ(raw_exchange("", 5s), "");  // idle connection closed without an answer
  EXPECT_LT(Clock::now() - t1, 3s);
}

TEST_F(ApiHttpTest, DependenciesWithoutAServiceAre503) {
  start();
  Reply r = get("/api/v1/dependencies");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.error_code(), "unavailable");
  EXPECT_EQ(post("/api/v1/dependencies", R"({"nix":"x"})").status, 503);
  EXPECT_EQ(send(http::verb::delete_, "/api/v1/dependencies/abc").status, 503);
}

TEST_F(ApiHttpTest, DependenciesEndpoints) {
  FakeDependencies deps;
  start({}, &deps);
  Reply list = get("/api/v1/dependencies");
  ASSERT_EQ(list.status, 200);
  const json::value doc = list.json();
  const auto& e = doc.at("dependencies").as_array().at(0).as_object();
  EXPECT_EQ(e.at("key").as_string(), "abc123");
  EXPECT_EQ(e.at("state").as_string(), "ready");
  EXPECT_EQ(e.at("store_path").as_string(), "/nix/store/xyz-env");
  EXPECT_EQ(e.at("packages").at(0).at("version").as_string(), "3.11.6");
  EXPECT_EQ(e.at("size_bytes").as_int64(), 1000);
  EXPECT_TRUE(e.at("last_used_at").is_null());
  EXPECT_TRUE(e.at("error").is_null());
  EXPECT_EQ(e.at("use_count").as_int64(), 2);
  EXPECT_EQ(e.at("created_at").as_string(), "2026-11-25T17:00:00.000Z");

  Reply built = post("/api/v1/dependencies", R"({"nix":"{ pkgs }: pkgs.hello"})");
  EXPECT_EQ(built.status, 202);
  EXPECT_EQ(built.json().at("state").as_string(), "building");
  EXPECT_TRUE(built.json().at("store_path").is_null());
  EXPECT_EQ(deps.last_nix, "{ pkgs }: pkgs.hello");
  EXPECT_EQ(post("/api/v1/dependencies", R"({"nix":"refuse"})").error_field(), "nix");
  EXPECT_EQ(post("/api/v1/dependencies", R"({"nix":1})").error_field(), "nix");
  EXPECT_EQ(post("/api/v1/dependencies", R"({})").error_field(), "nix");
  EXPECT_EQ(post("/api/v1/dependencies", R"({"nix":"x","y":1})").error_field(), "y");
  EXPECT_EQ(post("/api/v1/dependencies", R"({"nix":"x","nix":"y"})").error_field(), "nix");
  EXPECT_EQ(post("/api/v1/dependencies", R"({"nix":"x"})", {{"Content-Type", "text/x-nix"}}).status,
            415);

  Reply gone = send(http::verb::delete_, "/api/v1/dependencies/abc123");
  EXPECT_EQ(gone.status, 202);
  EXPECT_EQ(gone.json().at("key"), "abc123");
  EXPECT_EQ(gone.json().at("state"), "evicting");
  EXPECT_EQ(send(http::verb::delete_, "/api/v1/dependencies/busy").error_code(), "in_use");
  EXPECT_EQ(send(http::verb::delete_, "/api/v1/dependencies/nope").status, 404);
  EXPECT_EQ(send(http::verb::delete_, "/api/v1/dependencies/a%2Fb").status, 404);
  EXPECT_EQ(send(http::verb::get, "/api/v1/dependencies/abc123").status, 405);
}

TEST_F(ApiHttpTest, StopEndsParkedLongPolls) {
  HttpServerConfig config;
  config.max_wait_ms = 60'000;
  start(config);
  const std::string id = store_.add_queued();
  std::thread client([&] {
    try {
      get("/api/v1/submissions/" + id + "?wait=true");
    } catch (const std::exception&) {
      // the connection is dropped by stop(): expected
    }
  });
  std::this_thread::sleep_for(200ms);
  const auto t0 = Clock::now();
  server_->stop();
  EXPECT_LT(Clock::now() - t0, 2s);
  client.join();
}

}  // namespace
}  // namespace cutor
