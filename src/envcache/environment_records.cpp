// SQLite-backed EnvironmentRecords; see environment_records.h.
#include "envcache/environment_records.h"

#include <sqlite3.h>

#include <boost/json.hpp>
#include <mutex>
#include <stdexcept>

namespace cutor {

const char* environment_state_name(EnvironmentState s) {
  switch (s) {
    case EnvironmentState::kBuilding:
      return "building";
    case EnvironmentState::kReady:
      return "ready";
    case EnvironmentState::kFailed:
      return "failed";
    case EnvironmentState::kEvicting:
      return "evicting";
  }
  return "failed";
}

namespace {

namespace json = boost::json;

EnvironmentState parse_state(std::string_view s) {
  if (s == "ready") return EnvironmentState::kReady;
  if (s == "building") return EnvironmentState::kBuilding;
  return EnvironmentState::kFailed;
}

std::string packages_to_json(const std::vector<EnvironmentPackage>& packages) {
  json::array a;
  for (const auto& p : packages)
    a.push_back(json::object{
        {"name", p.name}, {"version", p.version}, {"path", p.path}, {"size_bytes", p.size_bytes}});
  return json::serialize(a);
}

std::vector<EnvironmentPackage> packages_from_json(std::string_view text) {
  std::vector<EnvironmentPackage> out;
  json::value v = json::parse(text);
  for (const auto& item : v.as_array()) {
    const auto& o = item.as_object();
    out.push_back({std::string(o.at("name").as_string()), std::string(o.at("version").as_string()),
                   std::string(o.at("path").as_string()), o.at("size_bytes").to_number<int64_t>()});
  }
  return out;
}

std::string strings_to_json(const std::vector<std::string>& strings) {
  json::array a;
  for (const auto& s : strings) a.push_back(json::string(s));
  return json::serialize(a);
}

std::vector<std::string> strings_from_json(std::string_view text) {
  std::vector<std::string> out;
  json::value doc = json::parse(text);
  for (const auto& item : doc.as_array()) out.emplace_back(item.as_string());
  return out;
}

// A prepared statement, finalized on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql, const std::string& db_path) : db_(db), path_(db_path) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
      throw std::runtime_error(path_ + ": prepare \"" + sql + "\": " + sqlite3_errmsg(db));
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  void bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void bind(int i, const std::optional<std::string>& v) {
    v ? bind(i, *v) : void(sqlite3_bind_null(stmt_, i));
  }
  void bind(int i, const std::optional<int64_t>& v) {
    v ? bind(i, *v) : void(sqlite3_bind_null(stmt_, i));
  }
  // True while a row is available.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw std::runtime_error(path_ + ": step: " + sqlite3_errmsg(db_));
  }
  std::string text(int col) {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
  }
  std::optional<std::string> opt_text(int col) {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
    return text(col);
  }
  int64_t integer(int col) { return sqlite3_column_int64(stmt_, col); }
  std::optional<int64_t> opt_integer(int col) {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
    return integer(col);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  const std::string& path_;
};

constexpr const char* kColumns =
    "key, state, store_path, packages, size_bytes, created_at, last_used_at, use_count, error, "
    "env";

class SqliteEnvironmentRecords final : public EnvironmentRecords {
 public:
  explicit SqliteEnvironmentRecords(const std::string& path) : path_(path) {
    if (sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        nullptr) != SQLITE_OK) {
      std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw std::runtime_error(path + ": open: " + msg);
    }
    sqlite3_busy_timeout(db_, 10000);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");
    exec(
        "CREATE TABLE IF NOT EXISTS environments ("
        " key TEXT PRIMARY KEY, state TEXT NOT NULL, store_path TEXT, packages TEXT NOT NULL,"
        " size_bytes INTEGER, created_at INTEGER NOT NULL, last_used_at INTEGER,"
        " use_count INTEGER NOT NULL, error TEXT, env TEXT NOT NULL)");
  }
  ~SqliteEnvironmentRecords() override { sqlite3_close(db_); }

  std::optional<EnvironmentEntry> get(const std::string& key) override {
    std::lock_guard lock(mu_);
    Statement s(db_,
                (std::string("SELECT ") + kColumns + " FROM environments WHERE key = ?").c_str(),
                path_);
    s.bind(1, key);
    if (!s.step()) return std::nullopt;
    return read_row(s);
  }

  std::vector<EnvironmentEntry> list() override {
    std::lock_guard lock(mu_);
    Statement s(db_,
                (std::string("SELECT ") + kColumns +
                 " FROM environments ORDER BY COALESCE(last_used_at, created_at) DESC, key")
                    .c_str(),
                path_);
    std::vector<EnvironmentEntry> out;
    while (s.step()) out.push_back(read_row(s));
    return out;
  }

  void put(const EnvironmentEntry& e) override {
    std::lock_guard lock(mu_);
    Statement s(db_,
                (std::string("INSERT OR REPLACE INTO environments (") + kColumns +
                 ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                    .c_str(),
                path_);
    s.bind(1, e.key);
    s.bind(2, std::string(environment_state_name(e.state)));
    s.bind(3, e.store_path);
    s.bind(4, packages_to_json(e.packages));
    s.bind(5, e.size_bytes);
    s.bind(6, e.created_at_ms);
    s.bind(7, e.last_used_at_ms);
    s.bind(8, e.use_count);
    s.bind(9, e.error);
    s.bind(10, strings_to_json(e.env));
    s.step();
  }

  void touch(const std::string& key, int64_t now_ms) override {
    std::lock_guard lock(mu_);
    Statement s(db_,
                "UPDATE environments SET last_used_at = ?, use_count = use_count + 1 WHERE key = ?",
                path_);
    s.bind(1, now_ms);
    s.bind(2, key);
    s.step();
  }

  bool remove(const std::string& key) override {
    std::lock_guard lock(mu_);
    Statement s(db_, "DELETE FROM environments WHERE key = ?", path_);
    s.bind(1, key);
    s.step();
    return sqlite3_changes(db_) > 0;
  }

 private:
  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      throw std::runtime_error(path_ + ": " + sql + ": " + msg);
    }
  }

  static EnvironmentEntry read_row(Statement& s) {
    EnvironmentEntry e;
    e.key = s.text(0);
    e.state = parse_state(s.text(1));
    e.store_path = s.opt_text(2);
    e.packages = packages_from_json(s.text(3));
    e.size_bytes = s.opt_integer(4);
    e.created_at_ms = s.integer(5);
    e.last_used_at_ms = s.opt_integer(6);
    e.use_count = s.integer(7);
    e.error = s.opt_text(8);
    e.env = strings_from_json(s.text(9));
    return e;
  }

  std::string path_;
  sqlite3* db_ = nullptr;
  std::mutex mu_;
};

}  // namespace

std::unique_ptr<EnvironmentRecords> open_environment_records(const std::string& path) {
  return std::make_unique<SqliteEnvironmentRecords>(path);
}

}  // namespace cutor
