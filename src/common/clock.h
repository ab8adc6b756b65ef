// Clock: the only way Verge code reads time, so that tests move time by hand instead of
// sleeping. Wall time is for records users see; steady time is for measuring silences and
// timeouts, immune to wall-clock steps. Thread-safety: implementations are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace verge {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual int64_t WallMs() const = 0;
  // Milliseconds on a monotonic clock with an arbitrary origin.
  virtual int64_t SteadyMs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t WallMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  int64_t SteadyMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

// A clock tests move by hand. Both readings advance together.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t wall_ms = 1'700'000'000'000) : wall_(wall_ms) {}
  int64_t WallMs() const override { return wall_.load(); }
  int64_t SteadyMs() const override { return steady_.load(); }
  void Advance(std::chrono::milliseconds d) {
    wall_ += d.count();
    steady_ += d.count();
  }

 private:
  std::atomic<int64_t> wall_;
  std::atomic<int64_t> steady_{1'000'000};
};

// RFC 3339 UTC with milliseconds, e.g. 2026-11-21T10:00:00.123Z; "" for 0.
std::string FormatTimeMs(int64_t wall_ms);

}  // namespace verge
