// UplinkBuffer: the node's durable store between ingest and the cloud, one SQLite file in WAL
// mode. It holds
//   - the ingest journal: every accepted payload as one encoded row, committed before the
//     device gets its answer, so a crash right after a 2xx loses nothing;
//   - the processing cursor: how far the pipeline has turned the journal into batches;
//   - closed uplink batches, compressed, each with a per-node sequence number, kept until the
//     cloud acknowledges them.
// Closed batches are bounded in bytes: past the bound the lowest priority, oldest batch is
// evicted first, and a TTL drops batches nobody could send in time. Every eviction and expiry
// is counted exactly (batches and readings, per priority) and the counters survive restarts.
//
// Thread-safety: thread-safe (one connection behind a mutex; SQLite has one writer anyway).
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/duration.h"
#include "common/sqlite.h"
#include "common/status.h"
#include "node/data/reading.h"
#include "verge/v1/link.pb.h"

namespace verge::data {

// The next reading the pipeline has not yet turned into a closed batch: index `index` of
// journal entry `seq`.
struct Cursor {
  uint64_t seq = 0;
  uint32_t index = 0;
  bool operator==(const Cursor&) const = default;
};

struct JournalEntry {
  uint64_t seq = 0;
  std::vector<Reading> readings;
};

struct StoredBatch {
  uint64_t seq = 0;  // assigned by Commit
  v1::Priority priority = v1::TELEMETRY;
  uint32_t count = 0;
  int64_t created_ms = 0;
  // zstd-compressed: a ReadingBatch, or an AlertBatch when priority is ALERTS (only rule
  // alerts use that priority; the uplink marks them BATCH_ALERTS).
  std::string data;
};

inline constexpr size_t kPriorities = 6;  // indexed by v1::Priority

struct PriorityCounters {
  uint64_t evicted_batches = 0;
  uint64_t evicted_readings = 0;
  uint64_t expired_batches = 0;
  uint64_t expired_readings = 0;
};

struct BufferStats {
  uint64_t journal_entries = 0;
  uint64_t journal_bytes = 0;  // accepted readings the pipeline has not yet taken
  uint64_t batches = 0;        // closed, waiting for an ack
  uint64_t batch_bytes = 0;
  uint64_t batch_readings = 0;
  uint64_t acked_batches = 0;
  uint64_t acked_readings = 0;
  std::array<PriorityCounters, kPriorities> by_priority{};
};

struct BufferOptions {
  // Bound on the journal (encoded readings accepted but not yet in the series and batches):
  // past it Append refuses with kUnavailable, so devices are told to retry (HTTP 503, MQTT not
  // acknowledged) instead of filling the disk while the pipeline is behind.
  uint64_t max_journal_bytes = 1ull << 30;
  // Bound on the bytes of closed batches (compressed).
  uint64_t max_bytes = 512ull << 20;
  // A batch not acknowledged within this is dropped (and counted).
  Millis ttl{7LL * 24 * 3600 * 1000};
  // FULL syncs every commit to the device (survives power loss); NORMAL survives a crash of
  // the process but not of the machine. See docs/operations.md.
  bool sync_full = false;
};

class UplinkBuffer {
 public:
  static Result<std::unique_ptr<UplinkBuffer>> Open(const std::string& path, BufferOptions options,
                                                    const Clock& clock);

  // Appends accepted readings to the journal; durable when it returns. Returns the entry seq.
  Result<uint64_t> Append(std::span<const Reading> readings);

  // Up to `max_entries` journal entries with seq >= from.seq, in order.
  Result<std::vector<JournalEntry>> ReadJournal(const Cursor& from, size_t max_entries);

  // In one transaction: stores `batches` (assigning their seqs), moves the durable cursor to
  // `cursor`, deletes journal entries wholly before it, then evicts past the byte bound.
  Status Commit(std::vector<StoredBatch>& batches, const Cursor& cursor);
  // Stores batches that come from outside the journal (rule alerts), leaving the cursor alone.
  Status AddBatches(std::vector<StoredBatch>& batches);
  Cursor cursor() const;

  // Closed batches not in `exclude`, highest priority first, then oldest.
  Result<std::vector<StoredBatch>> Pending(std::span<const uint64_t> exclude, size_t max);
  // Deletes acknowledged batches; unknown seqs (already evicted or acked) are ignored.
  Status Ack(std::span<const uint64_t> seqs);
  // Drops batches older than the TTL.
  Status Expire();
  // Every seq below this is acknowledged or dropped.
  uint64_t low_seq() const;
  uint64_t next_seq() const;

  BufferStats stats() const;

 private:
  UplinkBuffer(sql::Db db, BufferOptions options, const Clock& clock);
  Status Load();
  Status CommitLocked(std::vector<StoredBatch>& batches, const Cursor& cursor);
  Status EvictLocked();
  Status SaveCountersLocked();

  mutable std::mutex mu_;
  mutable sql::Db db_;     // GUARDED_BY(mu_)
  BufferOptions options_;  // const after construction
  const Clock& clock_;
  Cursor cursor_;              // GUARDED_BY(mu_)
  uint64_t next_seq_ = 1;      // GUARDED_BY(mu_)
  uint64_t journal_next_ = 1;  // GUARDED_BY(mu_)
  BufferStats stats_;          // GUARDED_BY(mu_)
};

}  // namespace verge::data
