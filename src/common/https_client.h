// A blocking HTTPS client for short request/response exchanges: vergectl, the node's join,
// rule webhooks (which may also be plain HTTP), and tests. Each call opens a connection, so a
// client object is cheap and holds no socket. Thread-safety: a client may be used from one thread
// at a time; make one per thread.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "common/http.h"
#include "common/status.h"

namespace verge::http {

struct ClientTls {
  // Trust anchor, PEM. Empty with insecure=false means "fail": there is no default trust.
  std::string ca_pem;
  // Client certificate and key for mTLS, PEM; both empty for none.
  std::string cert_pem;
  std::string key_pem;
  // Skips server verification; used only to fetch the CA whose pin is then checked.
  bool insecure = false;
  // Trusts the system's CA store (/etc/ssl/certs) instead of ca_pem: rule webhooks.
  bool system_roots = false;
  // No TLS at all (http://): rule webhooks to plain-HTTP receivers.
  bool plain = false;
};

struct ClientResult {
  Response response;
  // The server's leaf certificate, PEM (filled when the TLS handshake succeeded).
  std::string peer_cert_pem;
  // The certificates the server sent after its leaf, PEM, concatenated.
  std::string peer_chain_pem;
};

class HttpsClient {
 public:
  // `server` is "host:port" or "https://host:port".
  HttpsClient(const std::string& server, ClientTls tls,
              std::chrono::milliseconds timeout = std::chrono::seconds(10));

  Result<ClientResult> Do(std::string_view method, std::string_view target, std::string body = "",
                          const std::map<std::string, std::string>& headers = {});

  const std::string& host() const { return host_; }
  const std::string& port() const { return port_; }

 private:
  std::string host_;
  std::string port_;
  ClientTls tls_;
  std::chrono::milliseconds timeout_;
};

}  // namespace verge::http
