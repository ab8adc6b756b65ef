#include "common/tls.h"

#include <openssl/ssl.h>

namespace verge {
namespace ssl = boost::asio::ssl;

namespace {

Status Use(std::string_view what, boost::system::error_code ec) {
  if (!ec) return Status::Ok();
  return Error(Code::kInvalidArgument, "{}: {}", what, ec.message());
}

void CommonSettings(SslContext& ctx) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::single_dh_use);
  SSL_CTX_set_mode(ctx.native_handle(), SSL_MODE_RELEASE_BUFFERS);
}

}  // namespace

Result<std::shared_ptr<SslContext>> MakeClientContext(const http::ClientTls& tls) {
  auto ctx = std::make_shared<SslContext>(ssl::context::tls_client);
  CommonSettings(*ctx);
  boost::system::error_code ec;
  if (tls.insecure) {
    ctx->set_verify_mode(ssl::verify_none);
  } else if (tls.system_roots) {
    ctx->set_default_verify_paths(ec);
    VERGE_RETURN_IF_ERROR(Use("the system's CA certificates", ec));
    ctx->set_verify_mode(ssl::verify_peer);
  } else {
    if (tls.ca_pem.empty()) return Error(Code::kInvalidArgument, "no CA certificate to trust");
    ctx->add_certificate_authority(boost::asio::buffer(tls.ca_pem), ec);
    VERGE_RETURN_IF_ERROR(Use("bad CA certificate", ec));
    ctx->set_verify_mode(ssl::verify_peer);
  }
  if (!tls.cert_pem.empty()) {
    ctx->use_certificate_chain(boost::asio::buffer(tls.cert_pem), ec);
    VERGE_RETURN_IF_ERROR(Use("bad client certificate", ec));
    ctx->use_private_key(boost::asio::buffer(tls.key_pem), ssl::context::pem, ec);
    VERGE_RETURN_IF_ERROR(Use("bad client key", ec));
  }
  return ctx;
}

Result<std::shared_ptr<SslContext>> MakeServerContext(const ServerTls& tls) {
  auto ctx = std::make_shared<SslContext>(ssl::context::tls_server);
  CommonSettings(*ctx);
  // No client resumes sessions yet, and minting TLS 1.3 tickets re-encodes the client
  // certificate on every handshake (measured: ~17 % of link setup CPU).
  SSL_CTX_set_num_tickets(ctx->native_handle(), 0);
  boost::system::error_code ec;
  ctx->use_certificate_chain(boost::asio::buffer(tls.cert_pem), ec);
  VERGE_RETURN_IF_ERROR(Use("bad server certificate", ec));
  ctx->use_private_key(boost::asio::buffer(tls.key_pem), ssl::context::pem, ec);
  VERGE_RETURN_IF_ERROR(Use("bad server key", ec));
  if (!tls.client_ca_pem.empty()) {
    ctx->add_certificate_authority(boost::asio::buffer(tls.client_ca_pem), ec);
    VERGE_RETURN_IF_ERROR(Use("bad client CA", ec));
    // Ask for a certificate, verify it when given, but let certificate-less clients finish the
    // handshake: the join endpoint on the same port serves nodes that have no certificate yet.
    ctx->set_verify_mode(ssl::verify_peer);
    SSL_CTX_set_session_id_context(ctx->native_handle(),
                                   reinterpret_cast<const unsigned char*>("verge-link"), 10);
  }
  return ctx;
}

}  // namespace verge
