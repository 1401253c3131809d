// Internal to cutor_store: thin RAII wrappers over libpq.
//
// A Connection owns one PGconn. Every query goes through exec() with parameters sent and
// results read in binary format, so BLOBs (bytea) pass untouched and integers need no
// parsing. A Connection is not thread-safe: the store hands it to one thread at a time.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cutor::pg {

// Query parameters, all sent in binary format. Integers go as int8 (bigint).
class Params {
 public:
  Params& add(int64_t v);
  Params& add(std::optional<int64_t> v);
  Params& add_text(std::string_view v);
  Params& add_bytea(std::string_view v);

  int size() const { return static_cast<int>(storage_.size()); }
  const Oid* types() const { return types_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }
  // Pointers into storage_; valid while this object lives and is not added to.
  std::vector<const char*> values() const;

 private:
  void push(Oid type, std::string bytes, bool is_null);
  std::vector<std::string> storage_;
  std::vector<bool> null_;
  std::vector<Oid> types_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
};

// A query's result rows (binary format). Columns read as int64 must be bigint in SQL.
class Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  ~Result() { PQclear(r_); }
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;

  int rows() const { return PQntuples(r_); }
  // Rows an UPDATE/DELETE/INSERT touched.
  int64_t affected() const;
  bool is_null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
  int64_t int64(int row, int col) const;  // throws StoreError unless an 8-byte bigint
  std::optional<int64_t> opt_int64(int row, int col) const;
  std::string bytes(int row, int col) const;  // text or bytea, raw

 private:
  PGresult* r_;
};

class Connection {
 public:
  // Connects (blocking). Throws StoreError naming the target (password hidden) and why.
  explicit Connection(const std::string& url);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one statement. Throws StoreError "<label>: <what>: <server message>".
  Result exec(std::string_view what, const char* sql, const Params& params = {});
  // Several ';'-separated statements without parameters (schema creation).
  void exec_script(std::string_view what, const char* sql);

  PGconn* handle() const { return conn_; }
  // Still connected and outside any transaction: fit to go back into a pool.
  bool reusable() const;
  const std::string& label() const { return label_; }

 private:
  PGconn* conn_ = nullptr;
  std::string label_;  // "postgresql store <url without password>"
};

// BEGIN on construction; ROLLBACK on destruction unless commit() ran.
class Transaction {
 public:
  explicit Transaction(Connection& c, const char* begin_sql = "BEGIN");
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Connection& c_;
  bool done_ = false;
};

// The URL with any password replaced by "***", for messages.
std::string redact_url(const std::string& url);

}  // namespace cutor::pg
