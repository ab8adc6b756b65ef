// LinkService: the cloud end of the edge–cloud stream, independent of the transport.
//
// The transport (net.cc) authenticates the TLS client certificate, asks Authorize() before it
// accepts the WebSocket upgrade, then hands every binary frame to the Connection, and calls
// OnClosed() once. The service decodes Envelopes, enforces "Hello first, matching the
// certificate", feeds the Registry, and can cut any node's stream (decommission, supersede,
// shutdown) with a Goodbye.
//
// Thread-safety: thread-safe. Connection callbacks for one stream are never concurrent
// (the transport runs each stream on its own strand); LinkStream::Send may be called from
// any thread.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "cloud/registry.h"
#include "common/clock.h"
#include "verge/v1/link.pb.h"

namespace verge::cloud {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr const char* kSubprotocol = "verge.v1";

// The transport's side of one stream.
class LinkStream {
 public:
  virtual ~LinkStream() = default;
  // Queues a binary frame. Thread-safe.
  virtual void Send(std::string frame) = 0;
  // Closes after the queued frames are written. Thread-safe, idempotent.
  virtual void Close() = 0;
};

struct PeerIdentity {
  std::string common_name;
  std::string serial_hex;
  std::string remote_ip;
};

struct LinkCounters {
  std::atomic<uint64_t> streams_opened{0};
  std::atomic<uint64_t> streams_refused{0};
  std::atomic<uint64_t> hellos{0};
  std::atomic<uint64_t> heartbeats{0};
  std::atomic<uint64_t> unknown_messages{0};
  std::atomic<uint64_t> bad_frames{0};
};

class LinkService {
 public:
  class Connection {
   public:
    virtual ~Connection() = default;
    virtual void OnMessage(std::string_view frame) = 0;
    virtual void OnClosed(const std::string& reason) = 0;
  };

  LinkService(Registry& registry, const Clock& clock);

  // Decides, before the WebSocket upgrade, whether this certificate may open a stream.
  // Counts refusals.
  Status Authorize(const PeerIdentity& peer);
  std::shared_ptr<Connection> Open(std::shared_ptr<LinkStream> stream, PeerIdentity peer);

  // Sends a Goodbye to the node's stream, if it has one, and closes it.
  void Disconnect(const std::string& node, v1::Goodbye::Reason reason, const std::string& message);
  void DisconnectAll(v1::Goodbye::Reason reason, const std::string& message);

  size_t ActiveStreams() const;
  const LinkCounters& counters() const { return counters_; }

 private:
  class Conn;
  Status Check(const PeerIdentity& peer) const;
  void Attach(const std::string& node, const std::shared_ptr<Conn>& conn);
  void Detach(const std::string& node, const Conn* conn);

  Registry& registry_;
  const Clock& clock_;
  LinkCounters counters_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::weak_ptr<Conn>> streams_;  // GUARDED_BY(mu_)
};

// Encodes a Goodbye envelope.
std::string GoodbyeFrame(v1::Goodbye::Reason reason, const std::string& message);

}  // namespace verge::cloud
