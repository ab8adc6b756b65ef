// LinkClient: the node end of the edge–cloud stream. It dials the cloud (the cloud never
// dials a node), authenticates with the node certificate, sends Hello with the node's resume
// state, then heartbeats on its interval, and reconnects after any failure with jittered
// exponential backoff so that a cloud restart is not met by a thundering herd. A Goodbye
// with REVOKED, or a refused certificate, stops it for good: a person must act.
//
// Threading: runs as a coroutine on the executor it is given (one thread; the load tool puts
// thousands on one). Start/Stop/stats may be called from any thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/duration.h"
#include "verge/v1/link.pb.h"

namespace verge::node {

enum class LinkState { kIdle, kConnecting, kConnected, kBackoff, kRefused, kStopped };
std::string_view LinkStateName(LinkState s);

struct LinkOptions {
  std::string cloud;  // HOST:PORT
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  std::string node_name;
  Millis heartbeat{15'000};
  Millis reconnect_initial{500};
  Millis reconnect_max{30'000};
  // While the node holds data for the cloud (has_backlog), reconnect at least this often, so a
  // backlog starts draining soon after the cloud is back.
  Millis reconnect_backlog_max{5'000};
  std::function<bool()> has_backlog;
  Millis connect_timeout{10'000};
  // A stream that hears nothing from the cloud for this long is given up and redialled: a
  // stopped cloud process, or a middlebox that swallows the path, keeps TCP itself quiet.
  // 0: five heartbeats and 5 s (a quiet link asks for an ack after four).
  Millis silence_timeout{0};
  // Called on the link's executor for every frame from the cloud; must not block.
  std::function<void()> on_heard;
};

struct LinkStats {
  LinkState state = LinkState::kIdle;
  uint64_t connects = 0;  // streams that reached HelloAck
  uint64_t failures = 0;  // attempts or streams that ended in error
  uint64_t consecutive_failures = 0;
  uint64_t heartbeats_sent = 0;
  uint64_t frames_sent = 0;     // other than heartbeats
  uint64_t frames_dropped = 0;  // queued while no stream was up
  uint64_t unknown_messages = 0;
  int64_t rtt_ms = -1;        // last measured round trip
  int64_t clock_skew_ms = 0;  // cloud time minus node time, from the last Ack
  std::string last_error;
};

class LinkClient {
 public:
  using HelloFn = std::function<v1::Hello()>;
  using UsageFn = std::function<std::optional<v1::Resources>()>;
  using StateFn = std::function<void(LinkState, const std::string& detail)>;
  // Messages beyond the link's own (Hello, heartbeats, acks, goodbye): desired state, uplink
  // acks, ... Called on the link's executor; must not block.
  using MessageFn = std::function<void(const v1::Envelope&)>;
  // A stream reached HelloAck (up, with it) or ended (!up, with why). Called on the link's
  // executor.
  using SessionFn = std::function<void(bool up, const v1::HelloAck* ack, const std::string& why)>;

  LinkClient(boost::asio::any_io_executor ex, LinkOptions options, HelloFn hello, UsageFn usage,
             StateFn on_state);
  ~LinkClient();
  LinkClient(const LinkClient&) = delete;
  LinkClient& operator=(const LinkClient&) = delete;

  // REQUIRES: before Start.
  void OnMessage(MessageFn fn);
  void OnSession(SessionFn fn);

  void Start();
  void Stop();
  LinkStats stats() const;

  // Queues an envelope on the current stream. Thread-safe. A stream that ends drops what it
  // had not written: senders resend what matters (the uplink does, after its session ends).
  void Send(v1::Envelope env);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace verge::node
