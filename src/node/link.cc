#include "node/link.h"

#include <netinet/tcp.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <mutex>
#include <random>

#include "common/https_client.h"
#include "common/tls.h"

namespace verge::node {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using WsStream = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;
using namespace asio::experimental::awaitable_operators;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::string_view LinkStateName(LinkState s) {
  switch (s) {
    case LinkState::kIdle:
      return "idle";
    case LinkState::kConnecting:
      return "connecting";
    case LinkState::kConnected:
      return "connected";
    case LinkState::kBackoff:
      return "backoff";
    case LinkState::kRefused:
      return "refused";
    case LinkState::kStopped:
      return "stopped";
  }
  return "unknown";
}

struct LinkClient::Impl : std::enable_shared_from_this<LinkClient::Impl> {
  asio::any_io_executor ex;
  LinkOptions opt;
  HelloFn hello_fn;
  UsageFn usage_fn;
  StateFn state_fn;
  std::string host, port;
  std::shared_ptr<SslContext> ssl;
  std::mt19937_64 rng{std::random_device{}()};
  asio::steady_timer backoff_timer{ex};
  // The writer's wake-up timer in the connected session: Stop() and Send() cancel it. The
  // write loop is the session's only writer: on Stop it says Goodbye and closes cleanly.
  asio::steady_timer* wake_timer = nullptr;
  std::deque<std::string> outbox;  // frames for the current session
  MessageFn message_fn;
  SessionFn session_fn;
  WsStream* current = nullptr;  // the live stream, for Stop() to cut while connecting
  bool steady = false;          // past HelloAck: Stop() ends the session gracefully
  bool stopped = false;
  bool refused = false;        // the cloud refused this identity: retrying cannot help
  int64_t retry_after_ms = 0;  // from the last Goodbye: the cloud asked for this pause
  uint64_t next_id = 1;

  mutable std::mutex mu;
  LinkStats stats;  // GUARDED_BY(mu)

  Impl(asio::any_io_executor e, LinkOptions o) : ex(std::move(e)), opt(std::move(o)) {}

  void SetState(LinkState s, const std::string& detail) {
    {
      std::lock_guard lock(mu);
      stats.state = s;
    }
    if (state_fn) state_fn(s, detail);
  }

  template <typename F>
  void Stat(F f) {
    std::lock_guard lock(mu);
    f(stats);
  }

  std::string Encode(v1::Envelope& env) {
    env.set_id(next_id++);
    return env.SerializeAsString();
  }

  asio::awaitable<void> Run() {
    auto self = shared_from_this();
    int failures = 0;
    while (!stopped) {
      SetState(LinkState::kConnecting, opt.cloud);
      std::string reason;
      bool reached = false;
      try {
        reason = co_await Session(reached);
      } catch (const boost::system::system_error& e) {
        reason = e.code() == beast::error::timeout ? "timed out" : e.code().message();
      } catch (const std::exception& e) {
        reason = e.what();
      }
      current = nullptr;
      if (stopped) break;
      if (reached) failures = 0;
      ++failures;
      Stat([&](LinkStats& s) {
        ++s.failures;
        s.consecutive_failures = static_cast<uint64_t>(failures);
        s.last_error = reason;
      });
      if (refused) {
        SetState(LinkState::kRefused, reason);
        co_return;
      }
      // Full jitter over [d/2, d], d doubling per failure up to the cap.
      int64_t cap = opt.reconnect_max.count();
      if (opt.has_backlog && opt.has_backlog())
        cap = std::min(cap, std::max(opt.reconnect_backlog_max.count(), int64_t{1}));
      int64_t d = opt.reconnect_initial.count();
      for (int i = 1; i < failures && d < cap; ++i) d *= 2;
      d = std::min(d, cap);
      int64_t wait = std::uniform_int_distribution<int64_t>(d / 2, d)(rng);
      // The cloud said when to come back (it is shedding load): not sooner, spread over 20 %.
      if (retry_after_ms > 0) {
        wait = std::uniform_int_distribution<int64_t>(retry_after_ms, retry_after_ms * 6 / 5)(rng);
        retry_after_ms = 0;
      }
      SetState(LinkState::kBackoff,
               fmt::format("{}; retrying in {}", reason, FormatDuration(Millis(wait))));
      backoff_timer.expires_after(Millis(wait));
      co_await backoff_timer.async_wait(kTuple);
    }
    SetState(LinkState::kStopped, "");
  }

  asio::awaitable<std::string> Session(bool& reached) {
    tcp::resolver resolver(ex);
    auto [rec, eps] = co_await resolver.async_resolve(host, port, kTuple);
    if (rec) co_return fmt::format("cannot resolve {}: {}", host, rec.message());
    WsStream ws(ex, *ssl);
    current = &ws;
    auto& low = beast::get_lowest_layer(ws);
    low.expires_after(opt.connect_timeout);
    auto [cec, ep] = co_await low.async_connect(eps, kTuple);
    if (stopped) co_return "stopped";
    if (cec)
      co_return fmt::format("cannot connect to {}: {}", opt.cloud,
                            cec == beast::error::timeout ? "timed out" : cec.message());
    int fd = low.socket().native_handle();
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // Unacknowledged heartbeats for this long mean the path is dead: fail fast, reconnect.
    unsigned int user_timeout = static_cast<unsigned int>(2 * opt.heartbeat.count() + 10'000);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
    ws.next_layer().set_verify_callback(asio::ssl::host_name_verification(host));
    boost::system::error_code ip_ec;
    asio::ip::make_address(host, ip_ec);
    if (ip_ec) SSL_set_tlsext_host_name(ws.next_layer().native_handle(), host.c_str());
    auto [hec] = co_await ws.next_layer().async_handshake(asio::ssl::stream_base::client, kTuple);
    if (hec) co_return fmt::format("TLS handshake with {} failed: {}", opt.cloud, hec.message());
    low.expires_never();
    websocket::stream_base::timeout to{};
    to.handshake_timeout = opt.connect_timeout;
    to.idle_timeout = websocket::stream_base::none();
    to.keep_alive_pings = false;
    ws.set_option(to);
    ws.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
      req.set(beast::http::field::sec_websocket_protocol, "verge.v1");
      req.set(beast::http::field::user_agent, "verge-node/" VERGE_VERSION);
    }));
    websocket::response_type res;
    auto [wec] = co_await ws.async_handshake(res, host + ":" + port, "/v1/link", kTuple);
    if (wec) {
      int status = static_cast<int>(res.result_int());
      if (status == 401 || status == 403) {
        refused = true;
        http::Response r{status, "", res.body()};
        co_return "the cloud refused this node: " + http::StatusFromResponse(r).message();
      }
      co_return fmt::format("link handshake with {} failed: {}", opt.cloud,
                            status ? fmt::format("HTTP {}", status) : wec.message());
    }
    ws.binary(true);
    ws.read_message_max(4 << 20);

    v1::Envelope hello_env;
    *hello_env.mutable_hello() = hello_fn();
    co_await ws.async_write(asio::buffer(Encode(hello_env)), asio::use_awaitable);

    beast::flat_buffer buf;
    asio::steady_timer hello_timer(ex, opt.connect_timeout);
    auto first = co_await (ws.async_read(buf, asio::use_awaitable) ||
                           hello_timer.async_wait(asio::use_awaitable));
    if (first.index() == 1) co_return "no HelloAck from the cloud in time";
    v1::Envelope ack;
    if (!ack.ParseFromArray(buf.cdata().data(), static_cast<int>(buf.size()))) {
      co_return "the cloud sent something other than a verge.v1 Envelope";
    }
    buf.consume(buf.size());
    if (ack.has_goodbye()) co_return HandleGoodbye(ack.goodbye());
    if (!ack.has_hello_ack()) co_return "the cloud did not answer Hello with HelloAck";
    reached = true;
    Heard();
    Stat([](LinkStats& s) {
      ++s.connects;
      s.consecutive_failures = 0;
    });
    SetState(LinkState::kConnected,
             fmt::format("protocol v{}", ack.hello_ack().protocol_version()));
    if (stopped) co_return "stopped";
    steady = true;
    if (session_fn) session_fn(true, &ack.hello_ack(), "");
    auto ended = co_await (ReadLoop(ws, buf) || WriteLoop(ws) || Watchdog());
    steady = false;
    uint64_t dropped = outbox.size();
    outbox.clear();
    Stat([&](LinkStats& s) { s.frames_dropped += dropped; });
    std::string why = std::visit([](auto& s) { return std::string(s); }, ended);
    if (session_fn) session_fn(false, nullptr, why);
    if (stopped) co_return "stopped";
    co_return why;
  }

  std::string HandleGoodbye(const v1::Goodbye& g) {
    if (g.reason() == v1::Goodbye::REVOKED || g.reason() == v1::Goodbye::IDENTITY_MISMATCH) {
      refused = true;
    }
    retry_after_ms = std::min<int64_t>(g.retry_after_ms(), int64_t{10} * 60 * 1000);
    return "the cloud closed the link: " +
           (g.message().empty() ? std::string("goodbye") : g.message());
  }

  int64_t last_heard = 0;  // steady ms of the last frame from the cloud

  void Heard() {
    last_heard = SteadyNow();
    if (opt.on_heard) opt.on_heard();
  }

  Millis SilenceTimeout() const {
    return opt.silence_timeout.count() > 0 ? opt.silence_timeout : 5 * opt.heartbeat + Millis(5000);
  }

  // Ends the session when the cloud has been silent too long. Quiet links ask for an ack with
  // every heartbeat (HeartbeatFrame), so a live cloud is never this silent.
  asio::awaitable<std::string> Watchdog() {
    asio::steady_timer timer(ex);
    for (;;) {
      int64_t deadline = last_heard + SilenceTimeout().count();
      int64_t now = SteadyNow();
      if (now >= deadline)
        co_return fmt::format("no word from the cloud for {}; redialling",
                              FormatDuration(Millis(now - last_heard)));
      timer.expires_after(Millis(deadline - now));
      co_await timer.async_wait(kTuple);
    }
  }

  asio::awaitable<std::string> ReadLoop(WsStream& ws, beast::flat_buffer& buf) {
    for (;;) {
      auto [ec, n] = co_await ws.async_read(buf, kTuple);
      if (ec) {
        if (ec == websocket::error::closed) co_return "the cloud closed the link";
        co_return "link lost: " + ec.message();
      }
      Heard();
      v1::Envelope env;
      bool ok = env.ParseFromArray(buf.cdata().data(), static_cast<int>(buf.size()));
      buf.consume(buf.size());
      if (!ok) co_return "the cloud sent a frame that is not an Envelope";
      switch (env.body_case()) {
        case v1::Envelope::kGoodbye:
          co_return HandleGoodbye(env.goodbye());
        case v1::Envelope::kAck:
          OnAck(env);
          break;
        case v1::Envelope::kDesiredState:
        case v1::Envelope::kUplinkAck:
        case v1::Envelope::kLogRequest:
          if (message_fn) message_fn(env);
          break;
        default:
          // A newer cloud's message kind: ignored, as the compatibility rule says.
          Stat([](LinkStats& s) { ++s.unknown_messages; });
          break;
      }
    }
  }

  std::map<uint64_t, int64_t> pending_acks;  // envelope id -> send time (steady ms)

  void OnAck(const v1::Envelope& env) {
    auto it = pending_acks.find(env.in_reply_to());
    if (it == pending_acks.end()) return;
    int64_t now = SteadyNow();
    int64_t rtt = now - it->second;
    int64_t skew = env.ack().cloud_time_ms() - (WallNow() - rtt / 2);
    pending_acks.erase(it);
    Stat([&](LinkStats& s) {
      s.rtt_ms = rtt;
      s.clock_skew_ms = skew;
    });
  }

  static int64_t SteadyNow() {
    return std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  static int64_t WallNow() {
    return std::chrono::duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  asio::awaitable<std::string> WriteLoop(WsStream& ws) {
    asio::steady_timer timer(ex);
    wake_timer = &timer;
    struct Reset {
      asio::steady_timer*& t;
      ~Reset() { t = nullptr; }
    } reset{wake_timer};
    auto next_heartbeat = std::chrono::steady_clock::now() + opt.heartbeat;
    uint64_t seq = 1;
    for (;;) {
      if (stopped) {
        // Deliberate: say so, so the cloud records a clean disconnect. The read loop is still
        // pending and completes when the close handshake does.
        v1::Envelope bye;
        bye.mutable_goodbye()->set_reason(v1::Goodbye::SHUTTING_DOWN);
        bye.mutable_goodbye()->set_message("node is shutting down");
        auto [bec, bn] = co_await ws.async_write(asio::buffer(Encode(bye)), kTuple);
        if (!bec) co_await ws.async_close(websocket::close_code::going_away, kTuple);
        co_return "stopped";
      }
      if (!outbox.empty()) {
        std::string frame = std::move(outbox.front());
        outbox.pop_front();
        auto [wec, n] = co_await ws.async_write(asio::buffer(frame), kTuple);
        if (wec) co_return "link lost: " + wec.message();
        Stat([](LinkStats& s) { ++s.frames_sent; });
        continue;
      }
      if (std::chrono::steady_clock::now() >= next_heartbeat) {
        next_heartbeat = std::chrono::steady_clock::now() + opt.heartbeat;
        std::string bytes = HeartbeatFrame(seq++);
        auto [wec, n] = co_await ws.async_write(asio::buffer(bytes), kTuple);
        if (wec) co_return "link lost: " + wec.message();
        Stat([](LinkStats& s) { ++s.heartbeats_sent; });
        continue;
      }
      timer.expires_at(next_heartbeat);
      co_await timer.async_wait(kTuple);  // cancelled by Send and Stop
    }
  }

  std::string HeartbeatFrame(uint64_t seq) {
    v1::Envelope env;
    auto* hb = env.mutable_heartbeat();
    hb->set_seq(seq);
    hb->set_node_time_ms(WallNow());
    if (usage_fn) {
      if (auto used = usage_fn()) *hb->mutable_used() = *used;
    }
    // One measured round trip per connection (and then every 64th) is enough to track
    // latency and skew. Beyond those, an ack is asked for only when the link has been quiet
    // for four heartbeats: a busy link hears uplink acks anyway, and a quiet one must hear
    // something now and then for the watchdog and the autonomy state to tell a live cloud from
    // a hung one (TCP_USER_TIMEOUT already finds dead paths). One Ack a minute at the default
    // heartbeat keeps an idle link within its byte budget.
    int64_t quiet = SteadyNow() - last_heard;
    bool want_ack = seq == 1 || seq % 64 == 0 || quiet + 50 >= 4 * opt.heartbeat.count();
    hb->set_want_ack(want_ack);
    std::string bytes = Encode(env);
    if (want_ack) {
      pending_acks.clear();
      pending_acks[env.id()] = SteadyNow();
    }
    return bytes;
  }
};

LinkClient::LinkClient(asio::any_io_executor ex, LinkOptions options, HelloFn hello, UsageFn usage,
                       StateFn on_state)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(options))) {
  impl_->hello_fn = std::move(hello);
  impl_->usage_fn = std::move(usage);
  impl_->state_fn = std::move(on_state);
}

LinkClient::~LinkClient() { Stop(); }

void LinkClient::Start() {
  auto hp = http::SplitHostPort(impl_->opt.cloud);
  if (!hp.ok()) {
    impl_->Stat([&](LinkStats& s) { s.last_error = hp.status().message(); });
    impl_->SetState(LinkState::kRefused, hp.status().message());
    return;
  }
  impl_->host = hp->first;
  impl_->port = hp->second;
  auto ctx = MakeClientContext(
      http::ClientTls{impl_->opt.ca_pem, impl_->opt.cert_pem, impl_->opt.key_pem, false});
  if (!ctx.ok()) {
    impl_->Stat([&](LinkStats& s) { s.last_error = ctx.status().message(); });
    impl_->SetState(LinkState::kRefused, ctx.status().message());
    return;
  }
  impl_->ssl = *ctx;
  asio::co_spawn(impl_->ex, impl_->Run(), asio::detached);
}

void LinkClient::Stop() {
  asio::post(impl_->ex, [impl = impl_] {
    if (impl->stopped) return;
    impl->stopped = true;
    impl->backoff_timer.cancel();
    if (impl->steady && impl->wake_timer) {
      impl->wake_timer->cancel();
    } else if (impl->current) {
      boost::system::error_code ec;
      beast::get_lowest_layer(*impl->current).socket().shutdown(tcp::socket::shutdown_both, ec);
      beast::get_lowest_layer(*impl->current).close();
    }
  });
}

void LinkClient::OnMessage(MessageFn fn) { impl_->message_fn = std::move(fn); }
void LinkClient::OnSession(SessionFn fn) { impl_->session_fn = std::move(fn); }

void LinkClient::Send(v1::Envelope env) {
  asio::post(impl_->ex, [impl = impl_, env = std::move(env)]() mutable {
    if (!impl->steady || impl->stopped) {
      impl->Stat([](LinkStats& s) { ++s.frames_dropped; });
      return;
    }
    impl->outbox.push_back(impl->Encode(env));
    if (impl->wake_timer) impl->wake_timer->cancel();
  });
}

LinkStats LinkClient::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

}  // namespace verge::node
