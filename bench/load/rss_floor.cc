// The memory floor of an agent on this system: a process that does only what any node agent
// must — an OpenSSL TLS client context (the library initialised, as for the cloud link) and a
// SQLite database in WAL mode with one committed write — then idles. bench/load/node_rss.sh
// reads its memory in the same run as verge-node's, so the node's idle RSS is compared against
// what its two heaviest dependencies cost by themselves.
#include <openssl/ssl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: verge-rss-floor DB_PATH  (prints \"ready\", then sleeps)\n");
    return 2;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx || SSL_CTX_set_default_verify_paths(ctx) != 1) return 1;
  sqlite3* db = nullptr;
  if (sqlite3_open(argv[1], &db) != SQLITE_OK) return 1;
  const char* sql =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
      "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB);"
      "INSERT INTO t (v) VALUES (randomblob(100));";
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return 1;
  std::puts("ready");
  std::fflush(stdout);
  for (;;) pause();
}
