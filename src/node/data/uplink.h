// UplinkSender: moves closed batches from the UplinkBuffer to the cloud over the link, with a
// window of unacknowledged batches in flight so that a slow or distant link stays full. The
// buffer deletes a batch only when the cloud acknowledges it (after its commit); when a stream
// ends, whatever was in flight is sent again on the next one and the cloud's (node, seq)
// deduplication makes that harmless.
//
// Thread-safety: thread-safe. Its own thread does the SQLite work; OnSession/OnAck come from
// the link's thread and only queue.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "common/duration.h"
#include "node/data/buffer.h"
#include "verge/v1/link.pb.h"

namespace verge::data {

struct UplinkOptions {
  // Batches sent and not yet acknowledged.
  size_t window = 16;
  // How often batches past their TTL are dropped.
  Millis expire_every{60'000};
  // A batch not acknowledged this long after it was sent is sent again on the same stream
  // (a cloud that lost it, or failed to store it, never acks; deduplication makes a resend safe).
  Millis ack_timeout{30'000};
  // Bytes of batches per second the sender may put on the link (0: no limit). Batches go one
  // at a time, highest priority first, paced by a token bucket of one second's worth, so that
  // under a limit a new alert waits behind at most one batch, not a window of readings.
  uint64_t rate_bytes_per_s = 0;
};

struct UplinkStats {
  bool connected = false;
  size_t in_flight = 0;
  uint64_t sent = 0;
  uint64_t acked = 0;
  uint64_t resent = 0;  // sent again: after a stream ended, or after an ack timeout
  uint64_t ack_timeouts = 0;
  uint64_t errors = 0;
  uint64_t bytes_sent = 0;
  uint64_t rate_waits = 0;  // times a batch waited for the rate limit
  std::string last_error;
};

class UplinkSender {
 public:
  using SendFn = std::function<void(v1::Envelope)>;

  UplinkSender(UplinkBuffer& buffer, SendFn send, UplinkOptions options);
  ~UplinkSender();
  UplinkSender(const UplinkSender&) = delete;
  UplinkSender& operator=(const UplinkSender&) = delete;

  void Start();
  void Stop();

  void OnSession(bool up);
  void OnAck(const v1::UplinkAck& ack);
  // New batches were committed.
  void Notify();

  UplinkStats stats() const;

 private:
  void Run();

  UplinkBuffer& buffer_;
  SendFn send_;
  const UplinkOptions options_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;           // GUARDED_BY(mu_)
  bool up_ = false;             // GUARDED_BY(mu_)
  uint64_t session_ = 0;        // GUARDED_BY(mu_)
  bool more_ = true;            // GUARDED_BY(mu_): the buffer may hold unsent batches
  std::vector<uint64_t> acks_;  // GUARDED_BY(mu_)
  std::map<uint64_t, std::chrono::steady_clock::time_point> in_flight_;  // GUARDED_BY(mu_)
  std::set<uint64_t> ever_sent_;  // GUARDED_BY(mu_): for the resent counter, bounded below
  UplinkStats stats_;             // GUARDED_BY(mu_)
  // The rate limit's bucket: may go negative (a batch larger than what is left is sent, and
  // the debt is waited out before the next).
  double tokens_ = 0;                                      // GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point refilled_at_{};    // GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point ready_at_{};       // GUARDED_BY(mu_)
  void Refill(std::chrono::steady_clock::time_point now);  // REQUIRES: mu_ held
};

}  // namespace verge::data
