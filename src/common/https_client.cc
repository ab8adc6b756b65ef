#include "common/https_client.h"

#include <openssl/pem.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <type_traits>

#include "common/tls.h"

namespace verge::http {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

HttpsClient::HttpsClient(const std::string& server, ClientTls tls,
                         std::chrono::milliseconds timeout)
    : tls_(std::move(tls)), timeout_(timeout) {
  auto hp = SplitHostPort(server);
  if (hp.ok()) {
    host_ = hp->first;
    port_ = hp->second;
  }
}

namespace {

std::string X509Pem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

}  // namespace

Result<ClientResult> HttpsClient::Do(std::string_view method, std::string_view target,
                                     std::string body,
                                     const std::map<std::string, std::string>& headers) {
  if (host_.empty()) return Error(Code::kInvalidArgument, "no server address configured");
  Result<std::shared_ptr<SslContext>> ctx = std::shared_ptr<SslContext>();
  if (!tls_.plain) ctx = MakeClientContext(tls_);
  if (!ctx.ok()) return ctx.status();

  asio::io_context ioc;
  std::optional<Result<ClientResult>> result;
  std::string where = host_ + ":" + port_;

  bhttp::request<bhttp::string_body> req;
  req.method(bhttp::string_to_verb(std::string(method)));
  req.target(std::string(target));
  req.version(11);
  req.set(bhttp::field::host, host_);
  req.set(bhttp::field::user_agent, "verge/" VERGE_VERSION);
  for (auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    if (req[bhttp::field::content_type].empty())
      req.set(bhttp::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
  }

  // One exchange over `stream`: TLS (handshake, peer certificates) when it is an ssl_stream.
  auto exchange = [&](auto& stream) -> asio::awaitable<void> {
    constexpr bool kTls = !std::is_same_v<std::decay_t<decltype(stream)>, beast::tcp_stream>;
    auto ex = co_await asio::this_coro::executor;
    auto& tcp_layer = beast::get_lowest_layer(stream);
    ClientResult out;
    auto fail = [&](Code code, std::string_view stage, const boost::system::error_code& ec) {
      std::string msg = ec.message();
      if (ec == beast::error::timeout) msg = "timed out";
      result.emplace(Error(code, "{} {}: {}", stage, where, msg));
    };
    boost::system::error_code ec;
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    tcp::resolver resolver(ex);
    auto endpoints = co_await resolver.async_resolve(host_, port_, token);
    if (ec) co_return fail(Code::kUnavailable, "cannot resolve", ec);
    tcp_layer.expires_after(timeout_);
    co_await tcp_layer.async_connect(endpoints, token);
    if (ec) co_return fail(Code::kUnavailable, "cannot connect to", ec);
    if constexpr (kTls) {
      if (!tls_.insecure) stream.set_verify_callback(ssl::host_name_verification(host_));
      // SNI only for names: RFC 6066 forbids IP literals there.
      boost::system::error_code ip_ec;
      asio::ip::make_address(host_, ip_ec);
      if (ip_ec) SSL_set_tlsext_host_name(stream.native_handle(), host_.c_str());
      co_await stream.async_handshake(ssl::stream_base::client, token);
      if (ec) co_return fail(Code::kUnavailable, "TLS handshake with", ec);
      if (X509* peer = SSL_get0_peer_certificate(stream.native_handle()))
        out.peer_cert_pem = X509Pem(peer);
      if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(stream.native_handle())) {
        for (int i = 1; i < sk_X509_num(chain); ++i)
          out.peer_chain_pem += X509Pem(sk_X509_value(chain, i));
      }
    }
    co_await bhttp::async_write(stream, req, token);
    if (ec) co_return fail(Code::kUnavailable, "cannot send request to", ec);
    beast::flat_buffer buf;
    bhttp::response_parser<bhttp::string_body> parser;
    // App artifacts (OCI images) are the largest answers: up to the cloud's maxArtifactMB.
    parser.body_limit(std::uint64_t{512} * 1024 * 1024);
    co_await bhttp::async_read(stream, buf, parser, token);
    if (ec) co_return fail(Code::kUnavailable, "cannot read response from", ec);
    auto& res = parser.get();
    out.response.status = static_cast<int>(res.result_int());
    out.response.content_type = std::string(res[bhttp::field::content_type]);
    out.response.body = std::move(res.body());
    result.emplace(std::move(out));
    if constexpr (kTls) {
      tcp_layer.expires_after(std::chrono::seconds(1));
      co_await stream.async_shutdown(token);  // best effort; errors are expected here
    }
  };
  auto run = [&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    if (tls_.plain) {
      beast::tcp_stream stream(ex);
      co_await exchange(stream);
    } else {
      beast::ssl_stream<beast::tcp_stream> stream(ex, **ctx);
      co_await exchange(stream);
    }
  };
  asio::co_spawn(ioc, run(), asio::detached);
  ioc.run();
  if (!result) return Error(Code::kInternal, "request to {} did not complete", where);
  return std::move(*result);
}

}  // namespace verge::http
