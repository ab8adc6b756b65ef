#include "node/data/pipeline.h"

#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/compress.h"
#include "node/data/codec.h"

namespace verge::data {

namespace {

// Rough encoded size: enough to close batches near the byte bound without encoding twice.
size_t EstimateBytes(const Reading& r) { return 16 + r.device.size() / 8 + r.metric.size() / 8; }

}  // namespace

Pipeline::Pipeline(UplinkBuffer& buffer, SeriesStore* series, const Clock& clock,
                   PipelineOptions options)
    : buffer_(buffer), series_(series), clock_(clock), options_(options) {
  read_pos_ = buffer_.cursor();
  batch_end_ = read_pos_;
}

Pipeline::~Pipeline() { Stop(); }

void Pipeline::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Run(); });
}

void Pipeline::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Pipeline::Notify() {
  {
    std::lock_guard lock(mu_);
    notified_ = true;
  }
  cv_.notify_all();
}

void Pipeline::SetFilters(
    std::vector<std::pair<std::pair<std::string, std::string>, FilterSpec>> specs) {
  {
    std::lock_guard lock(mu_);
    new_filters_ = std::move(specs);
    filters_changed_ = true;
    notified_ = true;
  }
  cv_.notify_all();
}

void Pipeline::OnBatches(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  on_batches_ = std::move(fn);
}

PipelineStats Pipeline::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

Status Pipeline::CloseBatch(std::vector<StoredBatch>& closed) {
  if (open_.empty()) return Status::Ok();
  std::string raw = EncodeReadings(open_, ReadingsEncoding::kCompact);
  VERGE_ASSIGN_OR_RETURN(auto compressed, ZstdCompress(raw, options_.zstd_level));
  StoredBatch b;
  b.priority = v1::TELEMETRY;
  b.count = static_cast<uint32_t>(open_.size());
  b.created_ms = clock_.WallMs();
  b.data = std::move(compressed);
  {
    std::lock_guard lock(stats_mu_);
    ++stats_.batches;
    stats_.batch_bytes_raw += raw.size();
    stats_.batch_bytes_compressed += b.data.size();
  }
  closed.push_back(std::move(b));
  open_.clear();
  open_bytes_ = 0;
  return Status::Ok();
}

Status Pipeline::Step(bool flush) {
  {
    std::lock_guard lock(mu_);
    if (filters_changed_) {
      filters_.Set(std::move(new_filters_));
      new_filters_.clear();
      filters_changed_ = false;
    }
  }
  if (pending_) {
    VERGE_RETURN_IF_ERROR(buffer_.Commit(pending_->first, pending_->second));
    batch_end_ = pending_->second;
    bool batches = !pending_->first.empty();
    pending_.reset();
    if (batches) NotifyBatches();
  }
  VERGE_ASSIGN_OR_RETURN(auto entries, buffer_.ReadJournal(read_pos_, options_.read_entries));
  std::vector<StoredBatch> closed;
  Cursor commit_at = batch_end_;
  uint64_t processed = 0;
  if (series_ && !entries.empty()) {
    std::vector<Reading> all;
    for (const auto& e : entries) all.insert(all.end(), e.readings.begin(), e.readings.end());
    // Idempotent, so entries partly processed before a restart are simply stored again.
    VERGE_RETURN_IF_ERROR(series_->Insert(all));
  }
  for (const auto& e : entries) {
    size_t start = e.seq == read_pos_.seq ? read_pos_.index : 0;
    if (on_readings_ && start < e.readings.size())
      on_readings_(std::span<const Reading>(e.readings).subspan(start));
    for (size_t i = start; i < e.readings.size(); ++i) {
      passed_.clear();
      filters_.Apply(e.readings[i], passed_);
      ++processed;
      for (auto& r : passed_) {
        if (open_.empty()) open_since_ms_ = clock_.SteadyMs();
        open_bytes_ += EstimateBytes(r);
        open_.push_back(std::move(r));
      }
      if (open_.size() >= options_.batch_max_readings || open_bytes_ >= options_.batch_max_bytes) {
        VERGE_RETURN_IF_ERROR(CloseBatch(closed));
        commit_at = Cursor{e.seq, static_cast<uint32_t>(i + 1)};
      }
    }
    read_pos_ = Cursor{e.seq + 1, 0};
  }
  more_ = entries.size() == options_.read_entries;
  bool aged =
      !open_.empty() && clock_.SteadyMs() - open_since_ms_ >= options_.batch_max_age.count();
  if (!open_.empty() && (flush || aged)) {
    VERGE_RETURN_IF_ERROR(CloseBatch(closed));
  }
  // With nothing open, everything read so far is either batched or filtered out.
  if (open_.empty()) commit_at = read_pos_;
  {
    std::lock_guard lock(stats_mu_);
    stats_.processed += processed;
    stats_.passed = filters_.passed();
    stats_.suppressed = filters_.suppressed();
  }
  if (!closed.empty() || commit_at != buffer_.cursor()) {
    if (auto st = buffer_.Commit(closed, commit_at); !st.ok()) {
      // What this step read and batched is only in memory now (the journal still has it, for
      // a restart): keep it for the next step to commit first, never read past it.
      pending_.emplace(std::move(closed), commit_at);
      return st;
    }
    batch_end_ = commit_at;
  }
  if (!closed.empty()) NotifyBatches();
  return Status::Ok();
}

void Pipeline::NotifyBatches() {
  std::function<void()> fn;
  {
    std::lock_guard lock(mu_);
    fn = on_batches_;
  }
  if (fn) fn();
}

void Pipeline::Run() {
  pthread_setname_np(pthread_self(), "verge-pipeline");
  // Linux gives each thread its own nice value; unprivileged processes may raise it.
  if (options_.nice > 0 &&
      setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), options_.nice) != 0) {
    spdlog::warn("data pipeline: cannot lower its priority: {}", std::strerror(errno));
  }
  int64_t backoff_ms = 0;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      auto ready = [&] { return stop_ || notified_; };
      if (backoff_ms > 0) {
        cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stop_; });
      } else if (more_) {
        // A full page was read: go on without waiting.
      } else if (!open_.empty()) {
        int64_t left = open_since_ms_ + options_.batch_max_age.count() - clock_.SteadyMs();
        cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(left, 0)), ready);
      } else if (!more_) {
        cv_.wait(lock, ready);
      }
      if (stop_) break;
      notified_ = false;
    }
    if (auto st = Step(false); !st.ok()) {
      // Disk full or a damaged file: the journal keeps what was accepted; try again later.
      std::lock_guard lock(stats_mu_);
      ++stats_.errors;
      if (stats_.last_error != st.message()) spdlog::error("data pipeline: {}", st.message());
      stats_.last_error = st.message();
      backoff_ms = std::min<int64_t>(std::max<int64_t>(backoff_ms * 2, 100), 5000);
    } else {
      backoff_ms = 0;
    }
  }
  if (auto st = Step(true); !st.ok()) spdlog::warn("data pipeline at stop: {}", st.message());
}

}  // namespace verge::data
