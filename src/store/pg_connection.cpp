// libpq wrappers: binary parameters and results, errors as StoreError.
#include "store/pg_connection.h"

#include <endian.h>

#include <cstring>

#include "store/submission_store.h"

namespace cutor::pg {
namespace {

constexpr Oid kInt8Oid = 20;
constexpr Oid kTextOid = 25;
constexpr Oid kByteaOid = 17;

std::string server_message(PGconn* conn, const PGresult* r) {
  std::string msg = r ? PQresultErrorMessage(r) : PQerrorMessage(conn);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg.empty() ? "no message from libpq" : msg;
}

}  // namespace

std::string redact_url(const std::string& url) {
  // postgresql://user:secret@host/db -> postgresql://user:***@host/db
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const auto at = url.find('@', scheme + 3);
  if (at == std::string::npos) return url;
  const auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

void Params::push(Oid type, std::string bytes, bool is_null) {
  lengths_.push_back(static_cast<int>(bytes.size()));
  storage_.push_back(std::move(bytes));
  null_.push_back(is_null);
  types_.push_back(type);
  formats_.push_back(1);
}

Params& Params::add(int64_t v) {
  uint64_t be = htobe64(static_cast<uint64_t>(v));
  push(kInt8Oid, std::string(reinterpret_cast<const char*>(&be), sizeof be), false);
  return *this;
}

Params& Params::add(std::optional<int64_t> v) {
  if (v) return add(*v);
  push(kInt8Oid, {}, true);
  return *this;
}

Params& Params::add_text(std::string_view v) {
  push(kTextOid, std::string(v), false);
  return *this;
}

Params& Params::add_bytea(std::string_view v) {
  push(kByteaOid, std::string(v), false);
  return *this;
}

std::vector<const char*> Params::values() const {
  std::vector<const char*> out;
  for (size_t i = 0; i < storage_.size(); ++i)
    out.push_back(null_[i] ? nullptr : storage_[i].data());
  return out;
}

int64_t Result::affected() const {
  const char* n = PQcmdTuples(r_);
  return n && *n ? std::stoll(n) : 0;
}

int64_t Result::int64(int row, int col) const {
  if (is_null(row, col))
    throw StoreError("postgresql store: unexpected NULL in column " + std::to_string(col));
  if (PQgetlength(r_, row, col) != 8 || PQftype(r_, col) != kInt8Oid)
    throw StoreError("postgresql store: column " + std::to_string(col) + " is not a bigint");
  uint64_t be;
  std::memcpy(&be, PQgetvalue(r_, row, col), sizeof be);
  return static_cast<int64_t>(be64toh(be));
}

std::optional<int64_t> Result::opt_int64(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return int64(row, col);
}

std::string Result::bytes(int row, int col) const {
  return std::string(PQgetvalue(r_, row, col), PQgetlength(r_, row, col));
}

Connection::Connection(const std::string& url) : label_("postgresql store " + redact_url(url)) {
  conn_ = PQconnectdb(url.c_str());
  if (!conn_) throw StoreError(label_ + ": out of memory");
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string why = server_message(conn_, nullptr);
    PQfinish(conn_);
    conn_ = nullptr;
    throw StoreError(label_ + ": cannot connect: " + why);
  }
  // Notices (e.g. "relation already exists, skipping") are not for the log.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
}

Connection::~Connection() {
  if (conn_) PQfinish(conn_);
}

Result Connection::exec(std::string_view what, const char* sql, const Params& params) {
  std::vector<const char*> values = params.values();
  PGresult* r = PQexecParams(conn_, sql, params.size(), params.types(), values.data(),
                             params.lengths(), params.formats(), /*resultFormat=*/1);
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string msg = server_message(conn_, r);
    if (r) PQclear(r);
    throw StoreError(label_ + ": " + std::string(what) + ": " + msg);
  }
  return Result(r);
}

void Connection::exec_script(std::string_view what, const char* sql) {
  PGresult* r = PQexec(conn_, sql);
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string msg = server_message(conn_, r);
    if (r) PQclear(r);
    throw StoreError(label_ + ": " + std::string(what) + ": " + msg);
  }
  PQclear(r);
}

bool Connection::reusable() const {
  return PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) == PQTRANS_IDLE;
}

Transaction::Transaction(Connection& c, const char* begin_sql) : c_(c) {
  c_.exec("begin", begin_sql);
}

Transaction::~Transaction() {
  if (done_) return;
  // A failed ROLLBACK leaves the connection unusable; the pool then drops it.
  PGresult* r = PQexec(c_.handle(), "ROLLBACK");
  if (r) PQclear(r);
}

void Transaction::commit() {
  c_.exec("commit", "COMMIT");
  done_ = true;
}

}  // namespace cutor::pg
