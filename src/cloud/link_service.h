// LinkService: the cloud end of the edge–cloud stream, independent of the transport.
//
// The transport (net.cc) authenticates the TLS client certificate, asks Authorize() before it
// accepts the WebSocket upgrade, then hands every binary frame to the Connection, and calls
// OnClosed() once. The service decodes Envelopes, enforces "Hello first, matching the
// certificate", feeds the Registry, and can cut any node's stream (decommission, supersede,
// shutdown) with a Goodbye.
//
// Desired state: after HelloAck the node gets its whole DesiredState once if its resumed
// version differs from the cloud's; a device change while it is connected pushes the new
// document at once (DesiredStateSink). Each stream sends versions in increasing order only.
// StateReports go to the Registry (written behind).
//
// Rules: a DesiredState carries the rules whose nodeSelector matches the node's labels as
// the registry holds them when the document is sent. A StateReport that lists the node's
// rules (has_rules) goes to the Registry with it, which writes the statuses behind.
//
// Uplink: an UplinkBatch (readings or, with content BATCH_ALERTS, alerts) is decoded and
// validated on the stream's strand, then queued to the TelemetryWriter, which acknowledges it
// after the commit. A batch that can
// never be stored (corrupt, invalid) is acknowledged at once, counted in bad_batches and
// recorded as a `batch_rejected` node event: resending it could not help, and an unacked batch
// would be resent forever (docs/protocol.md).
//
// Thread-safety: thread-safe. Connection callbacks for one stream are never concurrent
// (the transport runs each stream on its own strand); LinkStream::Send may be called from
// any thread. Store reads on the strand are short indexed reads on a connection that never
// waits behind telemetry transactions (store_sqlite.h).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cloud/devices.h"
#include "cloud/link_stream.h"
#include "cloud/registry.h"
#include "cloud/store.h"
#include "cloud/telemetry.h"
#include "common/clock.h"
#include "verge/v1/link.pb.h"

namespace verge::cloud {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr const char* kSubprotocol = "verge.v1";
// What this cloud supports that a node must know of before using it. HelloAck lists those
// the node listed in its Hello too ("the features both sides have").
//   alerts: the cloud stores UplinkBatches of content BATCH_ALERTS.
inline constexpr std::string_view kCloudFeatures[] = {"alerts"};

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
  std::atomic<uint64_t> desired_states_sent{0};
  std::atomic<uint64_t> state_reports{0};
  std::atomic<uint64_t> uplink_batches{0};   // received, good or bad
  std::atomic<uint64_t> uplink_readings{0};  // in good batches received (duplicates included)
  std::atomic<uint64_t> uplink_alerts{0};    // the same, for alert batches
  std::atomic<uint64_t> bad_batches{0};
};

class LinkService final : public DesiredStateSink {
 public:
  class Connection {
   public:
    virtual ~Connection() = default;
    virtual void OnMessage(std::string_view frame) = 0;
    virtual void OnClosed(const std::string& reason) = 0;
  };

  LinkService(Registry& registry, Store& store, TelemetryWriter& telemetry, const Clock& clock);

  // Decides, before the WebSocket upgrade, whether this certificate may open a stream.
  // Counts refusals.
  Status Authorize(const PeerIdentity& peer);
  std::shared_ptr<Connection> Open(std::shared_ptr<LinkStream> stream, PeerIdentity peer);

  // Sends a Goodbye to the node's stream, if it has one, and closes it.
  void Disconnect(const std::string& node, v1::Goodbye::Reason reason, const std::string& message);
  void DisconnectAll(v1::Goodbye::Reason reason, const std::string& message);

  // Pushes the node's current desired state to its stream, if it has one and has not been
  // sent that version yet.
  void DesiredStateChanged(const std::string& node) override;

  struct LogChunk {
    std::string workload;
    std::string data;
    uint64_t offset = 0;
  };
  // Asks the node for an app's output and waits for its answer (at most `timeout`).
  // kUnavailable when the node has no stream. Blocks the calling thread.
  Result<std::vector<LogChunk>> RequestLogs(const std::string& node, const v1::LogRequest& request,
                                            std::chrono::milliseconds timeout);

  size_t ActiveStreams() const;
  const LinkCounters& counters() const { return counters_; }

 private:
  class Conn;
  Status Check(const PeerIdentity& peer) const;
  void Attach(const std::string& node, const std::shared_ptr<Conn>& conn);
  // Forgets `conn` as the node's stream; false if the node has another, newer stream.
  bool Detach(const std::string& node, const Conn* conn);
  void OnLogData(const std::string& node, uint64_t request_id, const v1::LogData& data);
  struct LogWait;

  Registry& registry_;
  Store& store_;
  TelemetryWriter& telemetry_;
  const Clock& clock_;
  LinkCounters counters_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::weak_ptr<Conn>> streams_;  // GUARDED_BY(mu_)
  std::mutex logs_mu_;
  // Log requests waiting for their answer, by node and envelope id.
  std::map<std::pair<std::string, uint64_t>, std::shared_ptr<LogWait>>
      log_waits_;  // GUARDED_BY(logs_mu_)
};

// Encodes a Goodbye envelope.
std::string GoodbyeFrame(v1::Goodbye::Reason reason, const std::string& message);

}  // namespace verge::cloud
