#include "cloud/net.h"

#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <thread>

#include "common/beast_http.h"
#include "common/https_client.h"
#include "common/pki.h"
#include "common/tls_socket.h"

namespace verge::cloud {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using WsStream = websocket::stream<TlsSocket>;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

PeerIdentity PeerOf(TlsSocket& stream, const std::string& ip) {
  PeerIdentity peer;
  peer.remote_ip = ip;
  SSL* ssl = stream.native_handle();
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (!cert || SSL_get_verify_result(ssl) != X509_V_OK) return peer;
  auto info = pki::InspectX509(cert);
  peer.common_name = info.common_name;
  peer.serial_hex = info.serial_hex;
  return peer;
}

// Closes the socket when a phase of the connection (handshake, one request) takes too long.
// Everything runs on the connection's strand, so the generation check is race-free: a timer
// that already fired but whose handler is still queued does nothing after a re-arm or Cancel.
class Deadline {
 public:
  explicit Deadline(const asio::any_io_executor& ex)
      : timer_(ex), state_(std::make_shared<State>()) {}
  ~Deadline() { Cancel(); }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  void Arm(TlsSocket& stream, std::chrono::steady_clock::duration d) {
    state_->stream = &stream;
    uint64_t gen = ++state_->generation;
    timer_.expires_after(d);
    timer_.async_wait([st = state_, gen](beast::error_code ec) {
      if (!ec && st->stream && st->generation == gen) st->stream->Close();
    });
  }

  void Cancel() {
    state_->stream = nullptr;
    ++state_->generation;
    timer_.cancel();
  }

 private:
  struct State {
    TlsSocket* stream = nullptr;
    uint64_t generation = 0;
  };
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

// One node stream. Reads run as a coroutine; writes are queued and chained with callbacks,
// all on the connection's strand, since Beast allows one read and one write at a time.
class WsConn final : public LinkStream, public std::enable_shared_from_this<WsConn> {
 public:
  explicit WsConn(WsStream ws) : ws_(std::move(ws)) {}

  void Send(std::string frame) override {
    asio::post(ws_.get_executor(), [self = shared_from_this(), f = std::move(frame)]() mutable {
      if (self->closing_ || self->closed_) return;
      self->queue_.push_back(std::move(f));
      if (!self->writing_) self->WriteNext();
    });
  }

  void Close() override {
    asio::post(ws_.get_executor(), [self = shared_from_this()] {
      if (self->closing_ || self->closed_) return;
      self->closing_ = true;
      if (!self->writing_) self->DoClose();
    });
  }

  asio::awaitable<void> Run(std::shared_ptr<LinkService::Connection> conn) {
    beast::flat_buffer buf;
    std::string reason = "link closed";
    for (;;) {
      auto [ec, n] = co_await ws_.async_read(buf, kTuple);
      if (ec) {
        if (ec == websocket::error::closed)
          reason = "node closed the link";
        else if (ec == beast::error::timeout)
          reason = "link idle timeout";
        else
          reason = "link error: " + ec.message();
        break;
      }
      auto data = buf.cdata();
      conn->OnMessage(std::string_view(static_cast<const char*>(data.data()), data.size()));
      buf.consume(buf.size());
    }
    closed_ = true;
    // A write in flight still uses the front frame; its completion drops the rest.
    if (!writing_) queue_.clear();
    conn->OnClosed(reason);
  }

 private:
  void WriteNext() {
    if (queue_.empty()) {
      writing_ = false;
      if (closing_) DoClose();
      return;
    }
    writing_ = true;
    ws_.async_write(asio::buffer(queue_.front()),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->queue_.pop_front();
                      if (ec || self->closed_) {
                        self->writing_ = false;
                        self->queue_.clear();
                        if (ec) self->ws_.next_layer().Close();
                        return;
                      }
                      self->WriteNext();
                    });
  }

  void DoClose() {
    if (closed_) return;
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {
      self->ws_.next_layer().Close();
    });
  }

  WsStream ws_;
  std::deque<std::string> queue_;
  bool writing_ = false;
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace

struct NetServer::Impl {
  Options options;
  LinkService& link;
  asio::io_context ioc;
  std::vector<std::thread> threads;
  struct Bound {
    Listener config;
    std::shared_ptr<SslContext> ssl;
    std::unique_ptr<tcp::acceptor> acceptor;
  };
  std::vector<std::unique_ptr<Bound>> listeners;
  bool started = false;
  bool stopped = false;

  Impl(Options o, LinkService& l) : options(o), link(l) {}

  asio::awaitable<void> Accept(Bound& b) {
    for (;;) {
      auto [ec, sock] = co_await b.acceptor->async_accept(asio::make_strand(ioc), kTuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || !b.acceptor->is_open()) co_return;
        // Out of descriptors or a transient error: wait a little rather than spin.
        spdlog::warn("accept on {}: {}", b.config.address, ec.message());
        asio::steady_timer t(ioc, std::chrono::milliseconds(100));
        co_await t.async_wait(kTuple);
        continue;
      }
      auto ex = sock.get_executor();
      asio::co_spawn(ex, Session(std::move(sock), b), asio::detached);
    }
  }

  asio::awaitable<void> Session(tcp::socket sock, Bound& b) {
    boost::system::error_code ignore;
    auto ep = sock.remote_endpoint(ignore);
    std::string ip = ep.address().to_string();
    sock.set_option(tcp::no_delay(true), ignore);
    TlsSocket stream(std::move(sock), b.ssl->native_handle(), TlsSocket::Role::kServer);
    if (!stream.ok()) {
      spdlog::warn("connection from {}: cannot set up TLS (out of memory?)", ip);
      co_return;
    }
    Deadline deadline(stream.get_executor());
    deadline.Arm(stream, std::chrono::seconds(10));
    auto [hec, hn] = co_await stream.async_handshake(kTuple);
    if (hec) co_return;
    beast::flat_buffer buf;
    for (;;) {
      bhttp::request_parser<bhttp::string_body> parser;
      // Beast checks Content-Length against the limit as soon as the header is parsed, so the
      // header is read with the larger limit and the path decides which one applies.
      parser.body_limit(std::max(options.max_body_bytes, options.max_large_body_bytes));
      deadline.Arm(stream, std::chrono::seconds(30));
      auto [hrec, hrn] = co_await bhttp::async_read_header(stream, buf, parser, kTuple);
      if (hrec) break;
      size_t limit = options.max_body_bytes;
      if (!options.large_body_prefix.empty() &&
          parser.get().target().starts_with(options.large_body_prefix)) {
        limit = options.max_large_body_bytes;
        // A large upload on a slow edge uplink takes a while.
        deadline.Arm(stream, std::chrono::minutes(10));
      }
      parser.body_limit(limit);
      bool too_large = parser.content_length() && *parser.content_length() > limit;
      beast::error_code rec;
      if (!too_large) {
        auto [ec, rn] = co_await bhttp::async_read(stream, buf, parser, kTuple);
        rec = ec;
      }
      if (too_large || rec == bhttp::error::body_limit) {
        http::Response r = http::ErrorResponse(
            Error(Code::kResourceExhausted, "request body larger than {} bytes", limit));
        auto res = http::ToBeast(r, 11, false, "verge-cloud/" VERGE_VERSION);
        co_await bhttp::async_write(stream, res, kTuple);
        break;
      }
      if (rec) break;
      auto req = parser.release();
      if (b.config.serves_link && websocket::is_upgrade(req)) {
        deadline.Cancel();
        co_await Upgrade(std::move(stream), std::move(req), ip);
        co_return;
      }
      http::Request hreq = http::FromBeast(req, ip);
      // Only the TLS layer may say who the client is: a header of that name is dropped.
      hreq.headers.erase(std::string(http::kPeerHeader));
      if (PeerIdentity peer = PeerOf(stream, ip); !peer.common_name.empty()) {
        hreq.headers[std::string(http::kPeerHeader)] = peer.common_name + " " + peer.serial_hex;
      }
      http::Response r = b.config.handler(hreq);
      auto res = http::ToBeast(r, req.version(), req.keep_alive(), "verge-cloud/" VERGE_VERSION);
      deadline.Arm(stream, std::chrono::seconds(30));
      auto [wec, wn] = co_await bhttp::async_write(stream, res, kTuple);
      if (wec || !req.keep_alive()) break;
    }
    deadline.Arm(stream, std::chrono::seconds(2));
    co_await stream.async_shutdown(kTuple);
    deadline.Cancel();
    stream.Close();
  }

  asio::awaitable<void> Refuse(TlsSocket& stream, const bhttp::request<bhttp::string_body>& req,
                               const Status& st) {
    Deadline deadline(stream.get_executor());
    deadline.Arm(stream, std::chrono::seconds(5));
    auto res =
        http::ToBeast(http::ErrorResponse(st), req.version(), false, "verge-cloud/" VERGE_VERSION);
    co_await bhttp::async_write(stream, res, kTuple);
    co_await stream.async_shutdown(kTuple);
    deadline.Cancel();
    stream.Close();
  }

  asio::awaitable<void> Upgrade(TlsSocket stream, bhttp::request<bhttp::string_body> req,
                                std::string ip) {
    if (req.target() != "/v1/link") {
      co_await Refuse(stream, req,
                      Error(Code::kNotFound, "no WebSocket endpoint at {}", req.target()));
      co_return;
    }
    PeerIdentity peer = PeerOf(stream, ip);
    if (auto st = link.Authorize(peer); !st.ok()) {
      spdlog::warn("link from {} refused: {}", ip, st.message());
      co_await Refuse(stream, req, st);
      co_return;
    }
    std::string_view protos = req[bhttp::field::sec_websocket_protocol];
    if (protos.find(kSubprotocol) == std::string_view::npos) {
      co_await Refuse(
          stream, req,
          Error(Code::kInvalidArgument, "WebSocket subprotocol {} required", kSubprotocol));
      co_return;
    }
    WsStream ws(std::move(stream));
    websocket::stream_base::timeout to{};
    to.handshake_timeout = std::chrono::seconds(10);
    to.idle_timeout = options.link_idle_timeout;
    to.keep_alive_pings = false;
    ws.set_option(to);
    ws.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(bhttp::field::sec_websocket_protocol, kSubprotocol);
      res.set(bhttp::field::server, "verge-cloud/" VERGE_VERSION);
    }));
    ws.binary(true);
    ws.read_message_max(4 << 20);
    ws.auto_fragment(false);
    // The server never masks or fragments, so Beast's write buffer would sit unused (4 KB).
    ws.write_buffer_bytes(64);
    auto [aec] = co_await ws.async_accept(req, kTuple);
    if (aec) co_return;
    auto conn = std::make_shared<WsConn>(std::move(ws));
    auto handler = link.Open(conn, peer);
    co_await conn->Run(std::move(handler));
  }
};

NetServer::NetServer(Options options, LinkService& link)
    : impl_(std::make_unique<Impl>(options, link)) {}

NetServer::~NetServer() { Stop(); }

Result<std::string> NetServer::AddListener(Listener listener) {
  VERGE_ASSIGN_OR_RETURN(auto hp, http::SplitHostPort("https://" + listener.address));
  VERGE_ASSIGN_OR_RETURN(auto ssl, MakeServerContext(listener.tls));
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(hp.first, ec);
  if (ec)
    return Error(Code::kInvalidArgument, "listen address {}: not an IP address", listener.address);
  int port = std::stoi(hp.second);
  if (port < 0 || port > 65535)
    return Error(Code::kInvalidArgument, "bad port in {}", listener.address);
  auto acc = std::make_unique<tcp::acceptor>(impl_->ioc);
  tcp::endpoint ep(addr, static_cast<unsigned short>(port));
  acc->open(ep.protocol(), ec);
  if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc->bind(ep, ec);
  if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Error(Code::kUnavailable, "cannot listen on {}: {}", listener.address, ec.message());
  auto bound = acc->local_endpoint();
  std::string host = bound.address().to_string();
  if (bound.address().is_v6()) host = "[" + host + "]";
  auto b = std::make_unique<Impl::Bound>();
  b->config = std::move(listener);
  b->ssl = std::move(ssl);
  b->acceptor = std::move(acc);
  impl_->listeners.push_back(std::move(b));
  return host + ":" + std::to_string(bound.port());
}

void NetServer::Start() {
  if (impl_->started) return;
  impl_->started = true;
  for (auto& b : impl_->listeners) {
    asio::co_spawn(impl_->ioc, impl_->Accept(*b), asio::detached);
  }
  int n = std::max(1, impl_->options.threads);
  for (int i = 0; i < n; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

void NetServer::Stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  asio::post(impl_->ioc, [this] {
    for (auto& b : impl_->listeners) {
      boost::system::error_code ec;
      b->acceptor->close(ec);
    }
  });
  // Give queued Goodbyes a moment to reach the nodes, then stop everything.
  if (impl_->started) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
}

}  // namespace verge::cloud
