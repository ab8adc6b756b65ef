// Autonomy: how far the node can count on the cloud right now, as a state machine fed by the
// link's events. It decides nothing the node does: everything runs from the node's disk in
// every state. It tells operators (GET /status, /metrics) and the cloud (autonomy.* events,
// sent through the uplink buffer so that an offline spell's transitions arrive on reconnect)
// what the link is going through, without flapping on a single lost packet.
//
//   start ─▶ AUTONOMOUS ──HelloAck──▶ RESYNCING ──(desired state current)──▶ CONNECTED
//                ▲                        │                                   │   ▲
//                │                   stream ends                stream ends,  │   │ heard
//                │                        ▼                   or cloud quiet  ▼   │ again
//                └──(N failed attempts, or no word for `silence`)────────── DEGRADED
//
// A node starts AUTONOMOUS: it runs its persisted desired state at once, before (or without)
// any word from the cloud. DEGRADED means the link is in trouble but has not been for long:
// a stream ended and fewer than `after_failures` attempts failed since, or a live stream has
// heard nothing from the cloud for `quiet` (an acknowledged heartbeat is expected sooner).
// RESYNCING lasts from HelloAck until the node has applied the cloud's current desired state
// (at once when it already had it).
//
// Thread-safety: thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/duration.h"

namespace verge::node {

enum class LinkMode { kConnected = 0, kDegraded = 1, kAutonomous = 2, kResyncing = 3 };
inline constexpr size_t kLinkModes = 4;
// connected | degraded | autonomous | resyncing
std::string_view LinkModeName(LinkMode m);

struct AutonomyOptions {
  // Failed attempts in a row (the end of a stream counts as the first) before AUTONOMOUS.
  int after_failures = 3;
  // No word from the cloud for this long, whatever the attempts do, means AUTONOMOUS (an
  // attempt that hangs in a partition takes its whole connect timeout to fail).
  Millis silence{60'000};
  // A live stream that heard nothing for this long is DEGRADED (a quiet link asks for an ack
  // after four silent heartbeats, so this is four heartbeats and a round trip's slack).
  Millis quiet{62'000};
  // Transitions kept for GET /status.
  size_t history = 32;
};

struct LinkTransition {
  LinkMode from = LinkMode::kAutonomous;
  LinkMode to = LinkMode::kAutonomous;
  int64_t at_ms = 0;     // Unix ms, node clock
  int64_t after_ms = 0;  // how long the node was in `from`
  std::string reason;
};

struct AutonomySnapshot {
  LinkMode mode = LinkMode::kAutonomous;
  int64_t since_ms = 0;       // Unix ms of entering `mode`
  int64_t in_state_ms = 0;    // how long so far
  int64_t last_heard_ms = 0;  // Unix ms of the last frame from the cloud; 0: never
  uint64_t failures = 0;      // failed attempts since the last stream
  uint64_t transitions = 0;
  // Time spent in each mode since the agent started, the current spell included.
  std::array<int64_t, kLinkModes> total_ms{};
  std::vector<LinkTransition> recent;  // oldest first
};

class Autonomy {
 public:
  Autonomy(AutonomyOptions options, const Clock& clock);

  // A dial or handshake failed, or a stream ended (after SessionDown).
  void AttemptFailed(const std::string& reason);
  // HelloAck: `cloud_version` is the cloud's desired-state version for this node, `applied`
  // the node's.
  void SessionUp(uint64_t cloud_version, uint64_t applied);
  void SessionDown(const std::string& reason);
  // The node applied (or failed to apply, which is as current as it gets) this version.
  void DesiredApplied(uint64_t version);
  // Any frame from the cloud.
  void Heard();
  // Applies the silence rules at the clock's current time.
  void Tick();

  AutonomySnapshot Snapshot() const;
  LinkMode mode() const;
  // Transitions since the last call, oldest first: they become events for the cloud.
  std::vector<LinkTransition> TakeNew();

 private:
  void Move(LinkMode to, std::string reason);  // REQUIRES: mu_ held

  const AutonomyOptions options_;
  const Clock& clock_;
  mutable std::mutex mu_;
  LinkMode mode_ = LinkMode::kAutonomous;  // GUARDED_BY(mu_), and the rest
  int64_t since_steady_ = 0;
  int64_t since_wall_ = 0;
  int64_t last_heard_steady_ = 0;  // also set when the silence starts counting
  int64_t last_heard_wall_ = 0;
  bool session_up_ = false;
  uint64_t resync_target_ = 0;  // RESYNCING ends once this version is applied
  uint64_t failures_ = 0;
  uint64_t transitions_ = 0;
  std::array<int64_t, kLinkModes> total_ms_{};
  std::deque<LinkTransition> recent_;
  std::vector<LinkTransition> new_;
};

}  // namespace verge::node
