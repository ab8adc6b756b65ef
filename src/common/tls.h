// Builds the OpenSSL contexts Verge uses, in one place so that every listener and client
// agrees on versions and settings: TLS 1.2 minimum (1.3 preferred), and buffers released
// while idle so that many idle connections stay cheap.
// Thread-safety: contexts are built once and then shared read-only.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "common/https_client.h"
#include "common/status.h"

namespace verge {

using SslContext = boost::asio::ssl::context;

Result<std::shared_ptr<SslContext>> MakeClientContext(const http::ClientTls& tls);

struct ServerTls {
  std::string cert_pem;  // leaf then chain
  std::string key_pem;
  // When set, clients are asked for a certificate, which must chain to this CA; a client may
  // still connect without one, and the handler decides (join needs none, the link needs one).
  std::string client_ca_pem;
};

Result<std::shared_ptr<SslContext>> MakeServerContext(const ServerTls& tls);

}  // namespace verge
