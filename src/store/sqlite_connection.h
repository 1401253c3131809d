// Internal to cutor_store: thin RAII wrappers over the sqlite3 C API.
//
// A Connection owns one sqlite3 handle and a cache of prepared statements keyed by a
// short name ("insert submission") that also labels errors. A Connection is not
// thread-safe: its owner serialises access (the store keeps one writer behind a mutex
// and hands reader connections to one thread at a time).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace cutor::sqlite {

// Throws StoreError "sqlite store <path>: <what>: <sqlite3_errmsg> (<code name>)".
[[noreturn]] void throw_error(sqlite3* db, const std::string& path, std::string_view what, int rc);

// A prepared statement. Use it through a Query, which resets it on every exit path so
// a reader never keeps its snapshot (or blocks checkpoints) longer than one call.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& path, std::string name, const char* sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  sqlite3_stmt* handle() const { return stmt_; }
  const std::string& name() const { return name_; }
  [[noreturn]] void fail(int rc) const;

 private:
  sqlite3* db_;
  const std::string& path_;
  std::string name_;
  sqlite3_stmt* stmt_ = nullptr;
};

// One execution of a Statement: bind (1-based), step, read columns (0-based).
class Query {
 public:
  explicit Query(Statement& s) : s_(s) {}
  ~Query();
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& bind(int i, int64_t v);
  Query& bind(int i, std::string_view text);  // as TEXT
  Query& bind_blob(int i, std::string_view bytes);
  Query& bind_null(int i);
  Query& bind(int i, const std::optional<int64_t>& v);

  // Returns true while a row is available, false when done. Throws on error.
  bool step();
  // Steps to completion, expecting no row (or ignoring them).
  void run();

  bool is_null(int col) const;
  int64_t int64(int col) const;
  std::optional<int64_t> opt_int64(int col) const;
  std::string text(int col) const;
  std::string blob(int col) const;  // raw bytes; NULL reads as empty

 private:
  Statement& s_;
};

class Connection {
 public:
  // Opens `path` (a file name, or a URI with SQLITE_OPEN_URI) with `flags`
  // (SQLITE_OPEN_*); errors name `label`, or `path` when it is empty. Throws
  // StoreError on failure.
  Connection(const std::string& path, int flags, const std::string& label = "");
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* handle() const { return db_; }
  // The name errors use (the file's path).
  const std::string& path() const { return path_; }
  // True when SQLite opened the file read-only (e.g. no write permission).
  bool read_only() const;

  // Runs one or more statements without results; `what` labels errors.
  void exec(const char* sql, std::string_view what);
  // A single-integer query such as "PRAGMA user_version".
  int64_t query_int(const char* sql, std::string_view what);
  // The cached statement called `name`, prepared from `sql` on first use.
  Statement& statement(const std::string& name, const char* sql);

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, std::unique_ptr<Statement>> cache_;
};

// BEGIN (IMMEDIATE for writers) on construction; rolls back on destruction unless
// commit() succeeded. A failed commit (disk full, read-only) is rolled back too.
class Transaction {
 public:
  enum class Kind { kRead, kWrite };
  Transaction(Connection& c, Kind kind);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Connection& c_;
  bool open_ = false;
};

}  // namespace cutor::sqlite
