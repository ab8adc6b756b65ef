#include "common/sqlite.h"

namespace verge::sql {
namespace {

Status SqlError(sqlite3* db, std::string_view what) {
  int rc = sqlite3_extended_errcode(db);
  Code code = Code::kInternal;
  if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
    code = Code::kAlreadyExists;
  else if ((rc & 0xff) == SQLITE_FULL)
    code = Code::kResourceExhausted;
  else if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB)
    code = Code::kDataLoss;
  else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
    code = Code::kUnavailable;
  else if ((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_READONLY ||
           (rc & 0xff) == SQLITE_PERM)
    code = Code::kPermissionDenied;
  return Error(code, "{}: {}", what, db ? sqlite3_errmsg(db) : "out of memory");
}

}  // namespace

Stmt::~Stmt() {
  if (stmt_) sqlite3_finalize(stmt_);
}

Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(stmt_, i, v);
  return *this;
}
Stmt& Stmt::Bind(int i, std::string_view v) {
  sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::BindBlob(int i, std::string_view v) {
  sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  return *this;
}
Stmt& Stmt::Bind(int i, double v) {
  sqlite3_bind_double(stmt_, i, v);
  return *this;
}
Stmt& Stmt::BindNull(int i) {
  sqlite3_bind_null(stmt_, i);
  return *this;
}

Result<bool> Stmt::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqlError(db_, "query failed");
}

Status Stmt::Run() {
  for (;;) {
    auto r = Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
  }
  sqlite3_reset(stmt_);
  return Status::Ok();
}

void Stmt::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Stmt::Int(int col) const { return sqlite3_column_int64(stmt_, col); }
double Stmt::Double(int col) const { return sqlite3_column_double(stmt_, col); }
std::string Stmt::Text(int col) const {
  const auto* p = sqlite3_column_text(stmt_, col);
  if (!p) return "";
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}
std::string_view Stmt::BlobView(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  if (!p) return {};
  return {static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, col))};
}
bool Stmt::IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

Result<Db> Db::Open(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) return SqlError(raw, "cannot open database " + path);
  sqlite3_busy_timeout(raw, 5000);
  sqlite3_extended_result_codes(raw, 1);
  // A garbage file opens fine and fails at the first read: read now, to say so up front.
  if (auto st = db.Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                        "PRAGMA foreign_keys=ON; SELECT count(*) FROM sqlite_master;");
      !st.ok()) {
    return st.Wrap("database " + path);
  }
  return db;
}

Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    cached_.clear();
    if (db_) sqlite3_close_v2(db_);
    db_ = o.db_;
    cached_ = std::move(o.cached_);
    o.db_ = nullptr;
  }
  return *this;
}

Db::~Db() {
  cached_.clear();
  if (db_) sqlite3_close_v2(db_);
}

Status Db::Exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    Status st = SqlError(db_, "statement failed");
    sqlite3_free(err);
    return st;
  }
  return Status::Ok();
}

Result<Stmt> Db::Prepare(std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &s, nullptr) != SQLITE_OK) {
    return SqlError(db_, "cannot prepare statement");
  }
  return Stmt(db_, s);
}

Result<CachedStmt> Db::Cached(std::string_view sql) {
  auto it = cached_.find(sql);
  if (it == cached_.end()) {
    VERGE_ASSIGN_OR_RETURN(auto st, Prepare(sql));
    it = cached_.emplace(std::string(sql), std::move(st)).first;
  }
  return CachedStmt(&it->second);
}

int64_t Db::Changes() const { return sqlite3_changes64(db_); }

Result<int> Db::SchemaVersion() {
  VERGE_RETURN_IF_ERROR(
      Exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms "
           "INTEGER NOT NULL)"));
  VERGE_ASSIGN_OR_RETURN(auto st,
                         Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? static_cast<int>(st.Int(0)) : 0;
}

Status Db::Migrate(std::span<const Migration> migrations) {
  VERGE_ASSIGN_OR_RETURN(int current, SchemaVersion());
  int newest = migrations.empty() ? 0 : migrations.back().version;
  if (current > newest) {
    return Error(Code::kFailedPrecondition,
                 "database schema version {} is newer than this program understands ({}); "
                 "run a newer version",
                 current, newest);
  }
  for (const auto& m : migrations) {
    if (m.version <= current) continue;
    VERGE_ASSIGN_OR_RETURN(auto txn, Txn::Begin(*this));
    VERGE_RETURN_IF_ERROR(Exec(m.sql).Wrap("migration " + std::to_string(m.version)));
    VERGE_ASSIGN_OR_RETURN(auto ins, Prepare("INSERT INTO schema_migrations VALUES (?, "
                                             "CAST(strftime('%s','now') AS INTEGER) * 1000)"));
    VERGE_RETURN_IF_ERROR(ins.Bind(1, static_cast<int64_t>(m.version)).Run());
    VERGE_RETURN_IF_ERROR(txn.Commit());
  }
  return Status::Ok();
}

Result<Txn> Txn::Begin(Db& db) {
  VERGE_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  return Txn(&db);
}

Txn::~Txn() {
  if (db_) (void)db_->Exec("ROLLBACK");
}

Status Txn::Commit() {
  Status st = db_->Exec("COMMIT");
  if (st.ok()) db_ = nullptr;
  return st;
}

}  // namespace verge::sql
