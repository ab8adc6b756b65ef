// What verge-devsim's modes share: stopping on a signal, a deadline or the end of the work;
// the load options of the HTTP and MQTT modes, pacing devices at their rate, counting what
// was sent, and the JSON summary line printed on exit.
//
// Thread-safety: StopFlag and Counters are thread-safe; RunPaced runs on the calling thread
// and owns the Paced entries it is given while it runs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/duration.h"
#include "devsim/payload.h"

namespace verge::devsim {

using SteadyTime = std::chrono::steady_clock::time_point;

class StopFlag {
 public:
  void Stop();
  bool stopped() const;
  // Waits until `deadline` or Stop(); returns stopped().
  bool WaitUntil(SteadyTime deadline) const;
  void Wait() const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool stopped_ = false;  // GUARDED_BY(mu_)
};

// Calls stop.Stop() on SIGINT, SIGTERM or SIGHUP.
// REQUIRES: PrepareSignals() ran before any thread was started, so that only this one
// receives them.
class SignalWatcher {
 public:
  explicit SignalWatcher(StopFlag& stop);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

struct LoadOptions {
  std::vector<DeviceCred> devices;
  double rate = 1;     // readings per second per device; 0: as fast as the server takes them
  uint64_t count = 0;  // readings per device; 0: no limit
  Millis duration{0};  // 0: no limit
  size_t batch = 1;    // readings per request or message
  PayloadFormat format = PayloadFormat::kJson;
  std::vector<std::string> metrics = {"temperature", "humidity"};
  uint64_t seed = 1;
  // The simulated clock (--start, --interval): reading i of a device is stamped
  // start_ns + i * interval, and its signals move on by `interval` per reading, however fast
  // the readings are actually sent. Unset: readings are stamped with the wall clock when sent.
  std::optional<int64_t> start_ns;
  Millis interval{0};  // > 0 when start_ns is set
};

struct Counters {
  std::atomic<uint64_t> requests{0};  // HTTP requests or MQTT messages
  std::atomic<uint64_t> sent{0};      // readings in them
  std::atomic<uint64_t> accepted{0};  // readings the server took (2xx, PUBACK)
  std::atomic<uint64_t> rejected{0};  // readings the server refused (4xx/5xx, refused login)
  std::atomic<uint64_t> errors{0};    // readings lost to transport failures or never acked
  std::atomic<uint64_t> bytes{0};     // payload bytes of the requests or messages (bodies only)
};

// One line: {"mode":..,"devices":..,"requests":..,"sent":..,"accepted":..,"rejected":..,
// "errors":..,"elapsed_ms":..} (keys sorted), and "bytes" too when `with_bytes` (runs on the
// simulated clock, so that the line of every other run stays as it was).
std::string SummaryJson(std::string_view mode, size_t devices, const Counters& c, Millis elapsed,
                        bool with_bytes = false);

// 1 when readings were sent and none reached the server (neither accepted nor rejected).
int LoadExitCode(const Counters& c);

// A device's place in the schedule.
struct Paced {
  size_t index = 0;  // in LoadOptions::devices
  DeviceCred cred;
  ReadingSource source;
  uint64_t remaining = 0;  // readings left to send; UINT64_MAX: no limit
  SteadyTime next;
  uint64_t produced = 0;  // readings made so far: the index of the next on the simulated clock
};

// The schedule entries for opts.devices, first sends spread over one batch interval.
std::vector<Paced> MakeSchedule(const LoadOptions& opts, SteadyTime start);

// Sends batches for `devices` in time order, each device at opts.rate, until every one has
// sent its count or `stop` is set. `send` runs on this thread.
void RunPaced(const std::vector<Paced*>& devices, const LoadOptions& opts, const StopFlag& stop,
              const std::function<void(Paced&, const std::vector<data::Reading>&)>& send);

// Sets `stop` when `duration` (if not 0) has passed. The run is over when it is destroyed:
// it sets `stop` too, ending its wait.
class Deadline {
 public:
  Deadline(StopFlag& stop, Millis duration);
  ~Deadline();

 private:
  StopFlag& stop_;
  std::thread thread_;
};

}  // namespace verge::devsim
