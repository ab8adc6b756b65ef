#include "devsim/run.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/log.h"

namespace verge::devsim {

void StopFlag::Stop() {
  std::lock_guard lk(mu_);
  stopped_ = true;
  cv_.notify_all();
}

bool StopFlag::stopped() const {
  std::lock_guard lk(mu_);
  return stopped_;
}

bool StopFlag::WaitUntil(SteadyTime deadline) const {
  std::unique_lock lk(mu_);
  cv_.wait_until(lk, deadline, [&] { return stopped_; });
  return stopped_;
}

void StopFlag::Wait() const {
  std::unique_lock lk(mu_);
  cv_.wait(lk, [&] { return stopped_; });
}

SignalWatcher::SignalWatcher(StopFlag& stop)
    : thread_([this, &stop] {
        WaitForStopSignal();
        done_ = true;
        stop.Stop();
      }) {}

SignalWatcher::~SignalWatcher() {
  // The work ended without a signal: wake the thread with one aimed at it alone. It does not
  // kill the thread: SIGTERM is blocked everywhere and the thread takes it with sigwait.
  if (!done_) {
    pthread_kill(thread_.native_handle(), SIGTERM);  // NOLINT(bugprone-bad-signal-to-kill-thread)
  }
  thread_.join();
}

std::string SummaryJson(std::string_view mode, size_t devices, const Counters& c, Millis elapsed,
                        bool with_bytes) {
  nlohmann::json j = {{"mode", mode},
                      {"devices", devices},
                      {"requests", c.requests.load()},
                      {"sent", c.sent.load()},
                      {"accepted", c.accepted.load()},
                      {"rejected", c.rejected.load()},
                      {"errors", c.errors.load()},
                      {"elapsed_ms", elapsed.count()}};
  if (with_bytes) j["bytes"] = c.bytes.load();
  return j.dump();
}

int LoadExitCode(const Counters& c) {
  return c.sent > 0 && c.accepted == 0 && c.rejected == 0 ? 1 : 0;
}

std::vector<Paced> MakeSchedule(const LoadOptions& opts, SteadyTime start) {
  std::vector<Paced> out;
  const double interval_s = opts.rate > 0 ? 1 / opts.rate : 0;
  const double batch_s = interval_s * static_cast<double>(opts.batch);
  // The signals move on by the simulated interval when there is one, else by the pacing.
  const double signal_dt_s = opts.start_ns    ? std::chrono::duration<double>(opts.interval).count()
                             : interval_s > 0 ? interval_s
                                              : 1;
  for (size_t i = 0; i < opts.devices.size(); ++i) {
    // Spread the first sends so that devices do not all fire in the same instant.
    double offset_s = batch_s * static_cast<double>(i) / static_cast<double>(opts.devices.size());
    out.push_back(Paced{i, opts.devices[i],
                        ReadingSource(opts.devices[i].name, opts.metrics, opts.seed, signal_dt_s),
                        opts.count > 0 ? opts.count : std::numeric_limits<uint64_t>::max(),
                        start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(offset_s))});
  }
  return out;
}

void RunPaced(const std::vector<Paced*>& devices, const LoadOptions& opts, const StopFlag& stop,
              const std::function<void(Paced&, const std::vector<data::Reading>&)>& send) {
  SystemClock clock;
  const bool unlimited = opts.count == 0;
  for (;;) {
    Paced* d = nullptr;
    for (Paced* p : devices) {
      if (p->remaining > 0 && (!d || p->next < d->next)) d = p;
    }
    if (!d) return;
    if (stop.WaitUntil(d->next)) return;
    uint64_t n = std::min<uint64_t>(opts.batch, d->remaining);
    if (!unlimited) d->remaining -= n;
    auto now = std::chrono::steady_clock::now();
    if (opts.rate > 0) {
      d->next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(static_cast<double>(n) / opts.rate));
      // After a stall (a slow server), keep the rate from now on instead of bursting to
      // catch up on more than a second.
      if (d->next < now - std::chrono::seconds(1)) d->next = now;
    } else {
      d->next = now;
    }
    if (opts.start_ns) {
      const int64_t step_ns = std::chrono::nanoseconds(opts.interval).count();
      const int64_t first_ns = *opts.start_ns + static_cast<int64_t>(d->produced) * step_ns;
      d->produced += n;
      send(*d, d->source.NextAt(n, first_ns, step_ns));
    } else {
      d->produced += n;
      send(*d, d->source.Next(n, clock.WallMs() * 1'000'000));
    }
  }
}

Deadline::Deadline(StopFlag& stop, Millis duration) : stop_(stop) {
  if (duration > Millis(0)) {
    thread_ = std::thread([this, duration] {
      stop_.WaitUntil(std::chrono::steady_clock::now() + duration);
      stop_.Stop();
    });
  }
}

Deadline::~Deadline() {
  stop_.Stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace verge::devsim
