#include "common/http_server.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>
#include <vector>

#include "common/beast_http.h"

namespace verge::http {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// Largest read buffer a connection keeps for request bodies (Beast reads at most 64 KB at once).
constexpr size_t kMaxReadBytes = 64 << 10;

struct HttpServer::Impl {
  Options options;
  Handler handler;
  asio::io_context ioc;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  bool started = false;
  bool stopped = false;

  asio::awaitable<void> Accept() {
    for (;;) {
      auto [ec, sock] = co_await acceptor->async_accept(asio::make_strand(ioc), kTuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
        spdlog::warn("http accept: {}", ec.message());
        asio::steady_timer t(ioc, std::chrono::milliseconds(100));
        co_await t.async_wait(kTuple);
        continue;
      }
      auto ex = sock.get_executor();
      asio::co_spawn(ex, Session(beast::tcp_stream(std::move(sock))), asio::detached);
    }
  }

  asio::awaitable<void> Session(beast::tcp_stream stream) {
    boost::system::error_code ignore;
    std::string ip = stream.socket().remote_endpoint(ignore).address().to_string();
    stream.socket().set_option(tcp::no_delay(true), ignore);
    beast::flat_buffer buf;
    for (;;) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(options.max_body_bytes);
      stream.expires_after(options.idle_timeout);
      auto [hec, hn] = co_await bhttp::async_read_header(stream, buf, parser, kTuple);
      boost::system::error_code rec = hec;
      if (!rec && !parser.is_done()) {
        // Beast reads as much as the buffer's free capacity, at least 512 bytes: the buffer
        // starts that small and never grows on its own, which would read a 64 KB body in 128
        // reads. Room for a large body's first 64 KB makes it a few reads.
        if (auto length = parser.content_length(); length && *length > buf.capacity()) {
          buf.reserve(std::min<size_t>(buf.size() + *length, kMaxReadBytes));
        }
        auto [bec, bn] = co_await bhttp::async_read(stream, buf, parser, kTuple);
        rec = bec;
      }
      if (rec == bhttp::error::body_limit) {
        auto res = ToBeast(
            ErrorResponse(Error(Code::kResourceExhausted, "request body larger than {} bytes",
                                options.max_body_bytes)),
            11, false, options.server_name.c_str());
        co_await bhttp::async_write(stream, res, kTuple);
        break;
      }
      if (rec) break;
      auto req = parser.release();
      Response r = handler(FromBeast(req, ip));
      auto res = ToBeast(r, req.version(), req.keep_alive(), options.server_name.c_str());
      stream.expires_after(std::chrono::seconds(30));
      auto [wec, wn] = co_await bhttp::async_write(stream, res, kTuple);
      if (wec || !req.keep_alive()) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_send, ignore);
  }
};

HttpServer::HttpServer(Options options, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

HttpServer::~HttpServer() { Stop(); }

Result<std::string> HttpServer::Listen(const std::string& address) {
  VERGE_ASSIGN_OR_RETURN(auto hp, SplitHostPort(address));
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(hp.first, ec);
  if (ec) return Error(Code::kInvalidArgument, "listen address {}: not an IP address", address);
  int port = 0;
  try {
    port = std::stoi(hp.second);
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) return Error(Code::kInvalidArgument, "bad port in {}", address);
  auto acc = std::make_unique<tcp::acceptor>(impl_->ioc);
  tcp::endpoint ep(addr, static_cast<unsigned short>(port));
  acc->open(ep.protocol(), ec);
  if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc->bind(ep, ec);
  if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error(Code::kUnavailable, "cannot listen on {}: {}", address, ec.message());
  auto bound = acc->local_endpoint();
  std::string host = bound.address().to_string();
  if (bound.address().is_v6()) host = "[" + host + "]";
  impl_->acceptor = std::move(acc);
  return host + ":" + std::to_string(bound.port());
}

void HttpServer::Start() {
  if (impl_->started || !impl_->acceptor) return;
  impl_->started = true;
  asio::co_spawn(impl_->ioc, impl_->Accept(), asio::detached);
  int n = std::max(1, impl_->options.threads);
  for (int i = 0; i < n; ++i) {
    impl_->threads.emplace_back([this] {
      // Named, so that top -H and the benchmarks tell the request threads apart.
      pthread_setname_np(pthread_self(), "verge-http");
      impl_->ioc.run();
    });
  }
}

void HttpServer::Stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
}

}  // namespace verge::http
