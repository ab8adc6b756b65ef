// TelemetryWriter: the two threads that write telemetry to the store. One commits uplink
// batches (readings and alerts) and then, only then, acknowledges them to their nodes; the
// other compacts the readings committed into chunks.
//
// Two stages, because the cost of a chunk row is per series: a batch of 10,000 readings from
// 10,000 devices would be 10,000 rows if every batch became chunks at once, and the uplink
// must take about a million readings a second on one core (a node draining an hour of
// buffered data). So:
//   1. Commit. Link streams (on I/O threads) decode and validate each UplinkBatch and Submit()
//      it. The writer takes everything queued (up to a group limit) and stages it in ONE
//      transaction (group commit: one fsync for many batches from many nodes), each batch one
//      row holding its bytes as received, deduplicated by (node, seq) in the same transaction.
//      After the commit each stream gets one UplinkAck with the seqs of its batches in the
//      group, stored now or found already stored. A failed commit acknowledges nothing: the
//      group goes back to the front of the queue and is retried with backoff.
//   2. Compaction, on its own thread so that acks never wait for it. When enough readings are
//      staged (compact_min_readings), or the oldest has waited compact_max_delay, it decodes a
//      slice of staged batches, merges their readings per (node, device, metric), and in one
//      short transaction stores them as chunks and deletes the staged rows. Queries read
//      staged batches and chunks, so nothing is invisible in between, and a crash between the
//      two stages loses nothing. Commits and compactions share the store's writer connection,
//      so a commit waits at most for one compaction's inserts, not for its decoding.
//
// Alerts. An uplink batch of alerts (BATCH_ALERTS) takes the same queue and the same group
// commit, as rows of the alerts table instead of a staged batch, and is never compacted. Alert
// and reading batches share each node's uplink sequence, so storing them in the transaction
// that records (node, seq) as stored keeps them exactly-once with one mechanism (resends,
// low_seq, a node that numbers afresh), and they get the ack after the commit and the bounded
// queue as readings do. A queue of their own would mean a second writer thread and a second
// dedup record that must agree with this one; an alert waits at most one group commit here.
//
// Back-pressure. Acks wait for the commit, so a node whose window of unacknowledged batches is
// full stops sending until the store catches up. The queue is bounded in bytes
// (max_queue_bytes); a batch that does not fit is refused (Submit returns false) and its
// stream is closed by its owner, so the node resends its unacknowledged batches after it
// reconnects.
//
// Thread-safety: thread-safe. Without Start() nothing runs by itself: tests drive the two
// stages with CommitPending() and Compact().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "cloud/link_stream.h"
#include "cloud/store.h"

namespace verge::cloud {

struct TelemetryWriterOptions {
  // One commit takes at most this many batches / readings (whichever comes first).
  size_t max_group_batches = 512;
  uint64_t max_group_readings = 2'000'000;
  // Queued bytes above which Submit refuses.
  size_t max_queue_bytes = size_t{256} << 20;
  // Compaction: when to start, and how much one transaction takes.
  // Larger slices make larger chunks when batches are wide (many series, few readings each):
  // 2,000,000 readings of 10,000 series are 200 readings a chunk, and ~32 MB while compacting.
  uint64_t compact_min_readings = 500'000;
  std::chrono::milliseconds compact_max_delay{5'000};
  size_t compact_max_batches = 4'096;
  uint64_t compact_max_readings = 2'000'000;
};

struct TelemetryCounters {
  std::atomic<uint64_t> batches_stored{0};
  std::atomic<uint64_t> batches_duplicate{0};
  std::atomic<uint64_t> readings_stored{0};
  std::atomic<uint64_t> alerts_stored{0};
  std::atomic<uint64_t> events_stored{0};  // node events (BATCH_EVENTS)
  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> commit_errors{0};
  std::atomic<uint64_t> refused_queue_full{0};
  std::atomic<uint64_t> compactions{0};
  std::atomic<uint64_t> readings_compacted{0};
  std::atomic<uint64_t> chunks_written{0};
  std::atomic<uint64_t> compaction_errors{0};
  std::atomic<uint64_t> staged_damaged{0};  // staged batches that no longer decode: dropped
};

class TelemetryWriter {
 public:
  struct Job {
    Store::UplinkRecord record;
    // Where the ack goes; a stream that closed meanwhile drops it, and the node resends.
    std::shared_ptr<LinkStream> reply;
  };

  TelemetryWriter(Store& store, TelemetryWriterOptions options = {});
  ~TelemetryWriter();
  TelemetryWriter(const TelemetryWriter&) = delete;
  TelemetryWriter& operator=(const TelemetryWriter&) = delete;

  void Start();
  // Commits what is queued (best effort), then joins the thread. Later Submits are refused.
  // Staged batches stay staged; the next start compacts them.
  void Stop();

  // Queues a batch. False if the queue is full or the writer stopped.
  bool Submit(Job job);
  // Stages one group and sends its acks; returns the number of batches it took (0: nothing
  // queued, or the commit failed and they are queued again).
  size_t CommitPending();
  // Compacts one slice of staged batches; returns how many batches it compacted (0: none
  // staged), or the store's error.
  Result<size_t> Compact();

  size_t queued_batches() const;
  size_t queued_bytes() const;
  const TelemetryCounters& counters() const { return counters_; }

 private:
  using SteadyTime = std::chrono::steady_clock::time_point;
  void RunCommits();
  void RunCompactions();
  bool CompactionDue(SteadyTime now) const;  // REQUIRES: mu_ held
  static size_t JobBytes(const Job& job);

  Store& store_;
  const TelemetryWriterOptions options_;
  TelemetryCounters counters_;
  mutable std::mutex mu_;
  // One per thread: each waits for something else (a notify_one meant for one must not be
  // taken by the other).
  std::condition_variable commit_cv_;   // a batch was queued, or stopping
  std::condition_variable compact_cv_;  // readings were staged, or stopping
  std::deque<Job> queue_;               // GUARDED_BY(mu_)
  size_t queue_bytes_ = 0;              // GUARDED_BY(mu_)
  bool stopping_ = false;               // GUARDED_BY(mu_)
  // Readings this writer staged and did not compact yet. staged_unknown_: more may be staged
  // than that (at start, a previous run may have left some; a compaction left a backlog).
  uint64_t staged_readings_ = 0;  // GUARDED_BY(mu_)
  bool staged_unknown_ = true;    // GUARDED_BY(mu_)
  SteadyTime staged_since_{};     // GUARDED_BY(mu_): when the backlog became non-empty
  std::mutex commit_mu_;          // one CommitPending at a time (thread and tests)
  std::mutex compact_mu_;         // one Compact at a time
  std::thread commit_thread_;
  std::thread compact_thread_;
};

}  // namespace verge::cloud
