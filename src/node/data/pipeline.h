// Pipeline: the node's background data path, from the ingest journal to the uplink buffer.
// One thread reads journal entries after its cursor, stores every reading in the local
// time-series, passes it through the uplink filters, and packs what passes into batches that
// close on count, bytes or age. A closed batch is zstd-compressed and committed to the
// UplinkBuffer together with the new cursor, in one transaction, so that after a crash the
// pipeline resumes exactly where the last closed batch ended: nothing is lost and nothing is
// batched twice. (Readings of a batch still open at a crash are simply batched again.)
//
// Thread-safety: Start/Stop/Notify/SetFilters/stats are thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/duration.h"
#include "node/data/buffer.h"
#include "node/data/filter.h"
#include "node/data/series.h"

namespace verge::data {

struct PipelineOptions {
  size_t batch_max_readings = 10'000;
  size_t batch_max_bytes = 1 << 20;  // encoded, before compression
  Millis batch_max_age{1000};
  int zstd_level = 3;
  // Journal entries read per step.
  size_t read_entries = 256;
  // The pipeline thread's nice value (0..19). Devices wait for ingest's answer; the pipeline
  // only has to keep up on average, behind the journal. So when the node's CPU is short,
  // ingest goes first and the pipeline takes what is left (still about a tenth of a busy core
  // at 10: it is slowed, never starved), and the journal's bound turns a sustained overload
  // into "retry later" for devices. 0: the same share as ingest.
  int nice = 10;
};

struct PipelineStats {
  uint64_t processed = 0;  // readings taken from the journal
  uint64_t passed = 0;     // readings the filters sent on
  uint64_t suppressed = 0;
  uint64_t batches = 0;
  uint64_t batch_bytes_raw = 0;
  uint64_t batch_bytes_compressed = 0;
  uint64_t errors = 0;
  std::string last_error;
};

class Pipeline {
 public:
  // `series` may be null (no local time-series).
  Pipeline(UplinkBuffer& buffer, SeriesStore* series, const Clock& clock, PipelineOptions options);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  void Start();
  // Closes the open batch (committing it), then stops the thread.
  void Stop();
  // New journal entries are there.
  void Notify();
  void SetFilters(std::vector<std::pair<std::pair<std::string, std::string>, FilterSpec>> specs);
  // Called (on the pipeline thread) after batches were committed.
  void OnBatches(std::function<void()> fn);
  // Called (on the pipeline thread, or Step's caller) with every reading as it is taken from
  // the journal, before the uplink filters: the rules' `telemetry` stream. Set before Start.
  void OnReadings(std::function<void(std::span<const Reading>)> fn) {
    on_readings_ = std::move(fn);
  }
  PipelineStats stats() const;

  // Runs one step synchronously (tests): processes what is in the journal and, if `flush`,
  // closes the open batch.
  Status Step(bool flush);
  // After Step: the journal held more than one page.
  bool more() const { return more_; }

 private:
  void Run();
  Status CloseBatch(std::vector<StoredBatch>& closed);

  UplinkBuffer& buffer_;
  SeriesStore* series_;
  const Clock& clock_;
  const PipelineOptions options_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;             // GUARDED_BY(mu_)
  bool notified_ = false;         // GUARDED_BY(mu_)
  bool filters_changed_ = false;  // GUARDED_BY(mu_)
  std::vector<std::pair<std::pair<std::string, std::string>, FilterSpec>>
      new_filters_;                   // GUARDED_BY(mu_)
  std::function<void()> on_batches_;  // GUARDED_BY(mu_)
  std::function<void(std::span<const Reading>)> on_readings_;
  std::thread thread_;

  // Pipeline thread only (or Step callers, never both).
  UplinkFilters filters_;
  Cursor read_pos_;   // next reading to look at
  Cursor batch_end_;  // the durable cursor once the open batch closes
  std::vector<Reading> open_;
  size_t open_bytes_ = 0;
  int64_t open_since_ms_ = 0;  // steady
  std::vector<Reading> passed_;
  bool more_ = false;  // the last step read a full page: more is waiting
  // A step's output whose commit failed (disk full): the in-memory state above is already
  // past it, so it is committed again, before anything else, until it goes through.
  std::optional<std::pair<std::vector<StoredBatch>, Cursor>> pending_;
  void NotifyBatches();

  mutable std::mutex stats_mu_;
  PipelineStats stats_;  // GUARDED_BY(stats_mu_)
};

}  // namespace verge::data
