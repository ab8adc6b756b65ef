// A thin RAII layer over SQLite: a connection in WAL mode, prepared statements, transactions
// and versioned schema migrations. Errors become Status values with SQLite's message.
// Thread-safety: a Db is used by one thread at a time; callers serialise (the stores do, with
// a mutex). Statements belong to their Db.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

namespace verge::sql {

class Stmt {
 public:
  Stmt(Stmt&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  // Parameters are 1-based, as in SQLite.
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, std::string_view v);
  Stmt& Bind(int i, const char* v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, double v);
  // Binds without copying: `v` must stay valid until the statement is stepped and reset.
  Stmt& BindBlob(int i, std::string_view v);
  Stmt& BindNull(int i);

  // Advances to the next row: true with a row, false when done; errors as Status.
  Result<bool> Step();
  // Runs to completion, ignoring rows.
  Status Run();
  void Reset();

  int64_t Int(int col) const;
  double Double(int col) const;
  std::string Text(int col) const;
  // Valid until the next Step or Reset.
  std::string_view BlobView(int col) const;
  bool IsNull(int col) const;

 private:
  friend class Db;
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), stmt_(s) {}
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// A statement from Db::Cached: reset (and its bindings cleared) when the handle goes away, so
// that it holds no read open and is ready for the next use. One use at a time per statement.
class CachedStmt {
 public:
  explicit CachedStmt(Stmt* s) : s_(s) {}
  CachedStmt(CachedStmt&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  CachedStmt(const CachedStmt&) = delete;
  CachedStmt& operator=(const CachedStmt&) = delete;
  ~CachedStmt() {
    if (s_) s_->Reset();
  }
  Stmt* operator->() const { return s_; }
  Stmt& operator*() const { return *s_; }

 private:
  Stmt* s_;
};

struct Migration {
  int version;
  const char* sql;
};

class Db {
 public:
  // Opens (creating) `path` in WAL mode with foreign keys on. ":memory:" is fine for tests.
  static Result<Db> Open(const std::string& path);
  Db(Db&& o) noexcept : db_(o.db_), cached_(std::move(o.cached_)) { o.db_ = nullptr; }
  Db& operator=(Db&& o) noexcept;
  Db(const Db&) = delete;
  ~Db();

  Status Exec(std::string_view sql);
  Result<Stmt> Prepare(std::string_view sql);
  // The statement prepared once per connection and kept: for statements run often, where
  // preparing would cost more than running. Statements are kept while the Db lives.
  Result<CachedStmt> Cached(std::string_view sql);
  int64_t Changes() const;

  // Applies, in order and each in its own transaction, the migrations newer than the
  // database's version. Refuses a database newer than the newest migration (a downgrade).
  Status Migrate(std::span<const Migration> migrations);
  Result<int> SchemaVersion();

  sqlite3* raw() { return db_; }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  struct SqlHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  std::unordered_map<std::string, Stmt, SqlHash, std::equal_to<>> cached_;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back unless Commit() succeeded.
class Txn {
 public:
  static Result<Txn> Begin(Db& db);
  Txn(Txn&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Txn(const Txn&) = delete;
  ~Txn();
  Status Commit();

 private:
  explicit Txn(Db* db) : db_(db) {}
  Db* db_;
};

}  // namespace verge::sql
