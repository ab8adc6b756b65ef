// HttpServer: a plain-HTTP/1.1 server (keep-alive, body limit, timeouts) for local APIs such as
// the node's device endpoint. Handlers see transport-free http::Request/Response, so they are
// tested and fuzzed without sockets. No TLS: it serves the local network of an edge site, and
// devices authenticate with their tokens.
//
// Threading: `threads` I/O threads; each connection on its own strand. A handler runs on an
// I/O thread and may block briefly (the node's ingest commits to disk before answering).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/duration.h"
#include "common/http.h"
#include "common/status.h"

namespace verge::http {

class HttpServer {
 public:
  using Handler = std::function<Response(const Request&)>;

  struct Options {
    int threads = 1;
    size_t max_body_bytes = 16 << 20;
    Millis idle_timeout{60'000};
    std::string server_name = "verge";
  };

  HttpServer(Options options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds now; returns the bound HOST:PORT (port 0 picks a free one).
  Result<std::string> Listen(const std::string& address);
  void Start();
  // Stops accepting, drops open connections, joins the threads. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace verge::http
