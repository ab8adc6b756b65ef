#include "cloud/telemetry.h"

#include <spdlog/spdlog.h>

#include <map>

#include "cloud/telemetry_codec.h"
#include "verge/v1/link.pb.h"

namespace verge::cloud {

TelemetryWriter::TelemetryWriter(Store& store, TelemetryWriterOptions options)
    : store_(store), options_(options) {}

TelemetryWriter::~TelemetryWriter() { Stop(); }

void TelemetryWriter::Start() {
  std::lock_guard lock(mu_);
  if (commit_thread_.joinable() || stopping_) return;
  commit_thread_ = std::thread([this] { RunCommits(); });
  compact_thread_ = std::thread([this] { RunCompactions(); });
}

void TelemetryWriter::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  commit_cv_.notify_all();
  compact_cv_.notify_all();
  if (commit_thread_.joinable()) commit_thread_.join();
  if (compact_thread_.joinable()) compact_thread_.join();
  // What was received before the stop is committed, so that its nodes need not resend it;
  // one failed attempt is enough, since they will resend anything not acknowledged.
  while (CommitPending() > 0) {
  }
  std::lock_guard lock(mu_);
  queue_.clear();
  queue_bytes_ = 0;
}

size_t TelemetryWriter::JobBytes(const Job& job) {
  size_t bytes = 128 + job.record.node.size() + job.record.data.size();
  for (const auto& a : job.record.alerts) {
    bytes += 64 + a.rule.size() + a.severity.size() + a.message.size() + a.data_json.size();
  }
  for (const auto& e : job.record.events) bytes += 64 + e.type.size() + e.message.size();
  return bytes;
}

bool TelemetryWriter::Submit(Job job) {
  size_t bytes = JobBytes(job);
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    // An empty queue takes any one batch, so that a single huge batch is never refused forever.
    if (!queue_.empty() && queue_bytes_ + bytes > options_.max_queue_bytes) {
      ++counters_.refused_queue_full;
      return false;
    }
    queue_bytes_ += bytes;
    queue_.push_back(std::move(job));
  }
  commit_cv_.notify_one();
  return true;
}

size_t TelemetryWriter::CommitPending() {
  std::lock_guard commit_lock(commit_mu_);
  std::vector<Job> group;
  {
    std::lock_guard lock(mu_);
    uint64_t readings = 0;
    while (
        !queue_.empty() && group.size() < options_.max_group_batches &&
        (group.empty() || readings + queue_.front().record.count <= options_.max_group_readings)) {
      readings += queue_.front().record.count;
      group.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  if (group.empty()) return 0;
  std::vector<const Store::UplinkRecord*> records;
  records.reserve(group.size());
  for (const auto& j : group) records.push_back(&j.record);
  auto stored = store_.StoreUplink(records);
  if (!stored.ok()) {
    ++counters_.commit_errors;
    spdlog::error("storing {} uplink batches failed (they stay queued and unacknowledged): {}",
                  group.size(), stored.status().message());
    std::lock_guard lock(mu_);
    for (auto it = group.rbegin(); it != group.rend(); ++it) queue_.push_front(std::move(*it));
    return 0;
  }
  ++counters_.commits;
  // One ack per stream for the whole group, sent only now that it is committed.
  std::map<LinkStream*, std::pair<std::shared_ptr<LinkStream>, v1::Envelope>> acks;
  size_t bytes = 0;
  uint64_t staged = 0;
  for (size_t i = 0; i < group.size(); ++i) {
    const Job& j = group[i];
    bytes += JobBytes(j);
    if ((*stored)[i]) {
      ++counters_.batches_stored;
      if (j.record.is_alerts) {
        counters_.alerts_stored += j.record.count;
      } else if (j.record.is_events) {
        counters_.events_stored += j.record.count;
      } else {
        counters_.readings_stored += j.record.count;
        staged += j.record.count;
      }
    } else {
      ++counters_.batches_duplicate;
    }
    if (!j.reply) continue;
    auto& slot = acks[j.reply.get()];
    slot.first = j.reply;
    slot.second.mutable_uplink_ack()->add_seqs(j.record.seq);
  }
  {
    std::lock_guard lock(mu_);
    queue_bytes_ -= std::min(queue_bytes_, bytes);
    if (staged > 0) {
      if (staged_readings_ == 0) staged_since_ = std::chrono::steady_clock::now();
      staged_readings_ += staged;
    }
  }
  if (staged > 0) compact_cv_.notify_one();
  for (auto& [ptr, slot] : acks) slot.first->Send(slot.second.SerializeAsString());
  return group.size();
}

Result<size_t> TelemetryWriter::Compact() {
  std::lock_guard compact_lock(compact_mu_);
  bool more = false;
  auto staged =
      store_.ListStaged(options_.compact_max_batches, options_.compact_max_readings, &more);
  if (!staged.ok()) {
    ++counters_.compaction_errors;
    return staged.status();
  }
  std::map<std::string, SeriesMerger> by_node;
  std::vector<int64_t> ids;
  uint64_t readings = 0, compacted = 0;
  for (const auto& b : *staged) {
    ids.push_back(b.id);
    readings += b.record.count;
    SeriesMerger& merger = by_node[b.record.node];
    Status st = VisitStaged(
        b.record,
        [&](const std::string& device, const std::string& metric, std::span<const int64_t> ts,
            std::span<const double> values) { merger.Add(device, metric, ts, values); });
    if (!st.ok()) {
      // It was valid when it came; the disk changed it. Nothing can repair it. (Validation
      // runs before the visitor, so none of it reached the merger.)
      ++counters_.staged_damaged;
      spdlog::error("dropping staged telemetry: {}", st.message());
    } else {
      compacted += b.record.count;
    }
  }
  std::vector<Store::ChunkRecord> chunks;
  for (auto& [node, merger] : by_node) {
    auto c = merger.TakeChunks(node);
    chunks.insert(chunks.end(), std::make_move_iterator(c.begin()),
                  std::make_move_iterator(c.end()));
  }
  if (!ids.empty()) {
    if (Status st = store_.CommitCompaction(ids, chunks); !st.ok()) {
      ++counters_.compaction_errors;
      return st;
    }
    ++counters_.compactions;
    counters_.readings_compacted += compacted;
    counters_.chunks_written += chunks.size();
  }
  if (staged->empty()) {
    // The count said there was something, but the stage is empty: a compaction took batches
    // whose commit had not counted them yet. Recount with commits held off.
    std::lock_guard commit_lock(commit_mu_);
    bool any = false;
    auto again = store_.ListStaged(1, 1, &any);
    std::lock_guard lock(mu_);
    if (again.ok() && again->empty()) {
      staged_readings_ = 0;
      staged_unknown_ = false;
    }
    return size_t{0};
  }
  std::lock_guard lock(mu_);
  staged_unknown_ = more;  // keep compacting while a backlog remains
  staged_readings_ -= std::min(staged_readings_, readings);
  if (staged_readings_ > 0) staged_since_ = std::chrono::steady_clock::now();
  return staged->size();
}

bool TelemetryWriter::CompactionDue(SteadyTime now) const {
  return staged_unknown_ || staged_readings_ >= options_.compact_min_readings ||
         (staged_readings_ > 0 && now >= staged_since_ + options_.compact_max_delay);
}

void TelemetryWriter::RunCommits() {
  int64_t backoff_ms = 0;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (backoff_ms > 0) {
      commit_cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms),
                          [this] { return stopping_; });
    } else {
      commit_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    }
    if (stopping_) break;
    if (queue_.empty()) continue;
    lock.unlock();
    bool ok = CommitPending() > 0;
    lock.lock();
    // A failing store (disk full, locked) is retried with backoff rather than spun on.
    backoff_ms = ok ? 0 : std::clamp<int64_t>(backoff_ms * 2, 100, 5000);
  }
}

void TelemetryWriter::RunCompactions() {
  int64_t backoff_ms = 0;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (backoff_ms > 0) {
      compact_cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms),
                           [this] { return stopping_; });
      if (stopping_) break;
    }
    if (!CompactionDue(std::chrono::steady_clock::now())) {
      // Woken by a commit or at the deadline, the loop decides again: a predicate wait would
      // sleep on past the deadline once it had been woken before it.
      if (staged_readings_ > 0) {
        compact_cv_.wait_until(lock, staged_since_ + options_.compact_max_delay);
      } else {
        compact_cv_.wait(lock,
                         [this] { return stopping_ || staged_unknown_ || staged_readings_ > 0; });
      }
      continue;
    }
    lock.unlock();
    auto r = Compact();
    if (!r.ok()) spdlog::error("compacting telemetry: {}", r.status().message());
    lock.lock();
    backoff_ms = r.ok() ? 0 : std::clamp<int64_t>(backoff_ms * 2, 100, 5000);
  }
}

size_t TelemetryWriter::queued_batches() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

size_t TelemetryWriter::queued_bytes() const {
  std::lock_guard lock(mu_);
  return queue_bytes_;
}

}  // namespace verge::cloud
