// NetServer: the cloud's network front, on one Boost.Asio/Beast I/O stack. Each listener is
// HTTPS; the link listener also upgrades GET /v1/link to the node WebSocket (subprotocol
// verge.v1) after LinkService::Authorize accepted the client certificate.
//
// Threading: `threads` I/O threads share one io_context; each connection runs on its own
// strand. Handlers are called on I/O threads and must not block for long.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "cloud/link_service.h"
#include "common/duration.h"
#include "common/http.h"
#include "common/tls.h"

namespace verge::cloud {

class NetServer {
 public:
  using Handler = std::function<http::Response(const http::Request&)>;

  struct Listener {
    std::string address;  // HOST:PORT; port 0 picks a free one
    ServerTls tls;
    Handler handler;
    bool serves_link = false;
  };

  struct Options {
    int threads = 2;
    // A link stream that receives nothing for this long is closed.
    Millis link_idle_timeout{120'000};
    size_t max_body_bytes = 1 << 20;
    // Bodies of requests whose path starts with this prefix (artifact uploads) may be larger.
    std::string large_body_prefix = "/api/v1/artifacts";
    size_t max_large_body_bytes = size_t{256} << 20;
  };

  NetServer(Options options, LinkService& link);
  ~NetServer();
  NetServer(const NetServer&) = delete;
  NetServer& operator=(const NetServer&) = delete;

  // Binds now; returns the bound address as HOST:PORT.
  Result<std::string> AddListener(Listener listener);
  void Start();
  // Stops accepting, closes every connection, joins the I/O threads. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace verge::cloud
