#include "store/sqlite_connection.h"

#include <limits>
#include <utility>

#include "store/submission_store.h"

namespace cutor::sqlite {

void throw_error(sqlite3* db, const std::string& path, std::string_view what, int rc) {
  std::string msg = "sqlite store " + path + ": " + std::string(what) + ": ";
  // sqlite3_errmsg describes the most recent failure on this handle; when the handle
  // could not even be allocated fall back to the generic text of the code.
  msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  msg += " (sqlite code " + std::to_string(rc) + ")";
  throw StoreError(msg);
}

Statement::Statement(sqlite3* db, const std::string& path, std::string name, const char* sql)
    : db_(db), path_(path), name_(std::move(name)) {
  // PERSISTENT: these live as long as the connection; tells SQLite not to use
  // lookaside memory meant for short-lived statements.
  int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) throw_error(db_, path_, "prepare " + name_, rc);
}

Statement::~Statement() {
  sqlite3_finalize(stmt_);
}

void Statement::fail(int rc) const {
  throw_error(db_, path_, name_, rc);
}

Query::~Query() {
  sqlite3_reset(s_.handle());
  sqlite3_clear_bindings(s_.handle());
}

Query& Query::bind(int i, int64_t v) {
  int rc = sqlite3_bind_int64(s_.handle(), i, v);
  if (rc != SQLITE_OK) s_.fail(rc);
  return *this;
}

Query& Query::bind(int i, std::string_view text) {
  int rc =
      sqlite3_bind_text64(s_.handle(), i, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK) s_.fail(rc);
  return *this;
}

Query& Query::bind_blob(int i, std::string_view bytes) {
  // A zero-length blob must still be a BLOB, not NULL: sqlite3_bind_blob64 with a null
  // pointer binds NULL, so point at a static empty buffer instead.
  static const char kEmpty = 0;
  const char* data = bytes.empty() ? &kEmpty : bytes.data();
  // SQLITE_STATIC: the caller's buffer outlives the step() that reads it (the Query
  // is always stepped before the bound value goes away).
  int rc = sqlite3_bind_blob64(s_.handle(), i, data, bytes.size(), SQLITE_STATIC);
  if (rc != SQLITE_OK) s_.fail(rc);
  return *this;
}

Query& Query::bind_null(int i) {
  int rc = sqlite3_bind_null(s_.handle(), i);
  if (rc != SQLITE_OK) s_.fail(rc);
  return *this;
}

Query& Query::bind(int i, const std::optional<int64_t>& v) {
  return v ? bind(i, *v) : bind_null(i);
}

bool Query::step() {
  int rc = sqlite3_step(s_.handle());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  s_.fail(rc);
}

void Query::run() {
  while (step()) {
  }
}

bool Query::is_null(int col) const {
  return sqlite3_column_type(s_.handle(), col) == SQLITE_NULL;
}

int64_t Query::int64(int col) const {
  return sqlite3_column_int64(s_.handle(), col);
}

std::optional<int64_t> Query::opt_int64(int col) const {
  if (is_null(col)) return std::nullopt;
  return int64(col);
}

std::string Query::text(int col) const {
  const unsigned char* p = sqlite3_column_text(s_.handle(), col);
  int n = sqlite3_column_bytes(s_.handle(), col);
  return p ? std::string(reinterpret_cast<const char*>(p), n) : std::string();
}

std::string Query::blob(int col) const {
  const void* p = sqlite3_column_blob(s_.handle(), col);
  int n = sqlite3_column_bytes(s_.handle(), col);
  return p ? std::string(static_cast<const char*>(p), n) : std::string();
}

Connection::Connection(const std::string& path, int flags, const std::string& label)
    : path_(label.empty() ? path : label) {
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    // The handle exists (holding the error message) unless allocation failed; it must
    // be closed even though the open failed.
    std::string msg = "sqlite store " + path_ +
                      ": open: " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc)) +
                      " (sqlite code " + std::to_string(rc) + ")";
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw StoreError(msg);
  }
  sqlite3_extended_result_codes(db_, 1);
}

Connection::~Connection() {
  cache_.clear();  // finalize statements before closing the handle
  sqlite3_close_v2(db_);
}

bool Connection::read_only() const {
  return sqlite3_db_readonly(db_, "main") == 1;
}

void Connection::exec(const char* sql, std::string_view what) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  sqlite3_free(err);  // sqlite3_errmsg still holds the same text
  if (rc != SQLITE_OK) throw_error(db_, path_, what, rc);
}

int64_t Connection::query_int(const char* sql, std::string_view what) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) throw_error(db_, path_, what, rc);
  rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) {
    // Read the message before finalize, which may replace it.
    std::string msg = sqlite3_errmsg(db_);
    sqlite3_finalize(stmt);
    throw StoreError("sqlite store " + path_ + ": " + std::string(what) + ": " + msg +
                     " (sqlite code " + std::to_string(rc) + ")");
  }
  int64_t v = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return v;
}

Statement& Connection::statement(const std::string& name, const char* sql) {
  auto it = cache_.find(name);
  if (it != cache_.end()) return *it->second;
  auto s = std::make_unique<Statement>(db_, path_, name, sql);
  return *cache_.emplace(name, std::move(s)).first->second;
}

Transaction::Transaction(Connection& c, Kind kind) : c_(c) {
  // IMMEDIATE takes the write lock up front, so a writer never fails half-way with
  // SQLITE_BUSY on lock upgrade; a read transaction pins one consistent snapshot.
  // Prepared once per connection, like COMMIT: sqlite3_exec would parse them again for
  // every transaction (a submission makes about seven).
  if (kind == Kind::kWrite)
    Query(c_.statement("begin transaction", "BEGIN IMMEDIATE")).run();
  else
    Query(c_.statement("begin read transaction", "BEGIN")).run();
  open_ = true;
}

Transaction::~Transaction() {
  // After some errors (SQLITE_FULL, SQLITE_IOERR) SQLite has already rolled back;
  // only roll back when a transaction is still open.
  if (open_ && !sqlite3_get_autocommit(c_.handle())) {
    sqlite3_exec(c_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

void Transaction::commit() {
  Query(c_.statement("commit", "COMMIT")).run();
  open_ = false;
}

}  // namespace cutor::sqlite
