// ModbusPoller: polls Modbus TCP devices for the node's data plane. For each device it reads
// the register blocks that PlanReads makes, each at its interval, decodes them into Readings
// stamped with the poll time, and hands them to a callback, one batch per device and poll.
//
// Design: one thread per device, each with its own libmodbus connection. A device that is
// down or hung then costs only its own thread's time (connect and every exchange are bounded
// by the device's `timeout`; resolving a host name is not, so give devices on the local
// network as addresses) and never delays another device; a node talks to tens of devices, so
// the thread count stays small and is bounded by the device list. Between polls a device
// thread waits on a condition variable, so Stop and SetDevices wake it at once. A device is
// dialled only when one of its polls is due; after a failed connect or a broken connection it
// retries with jittered exponential backoff (reconnect_initial doubling up to reconnect_max),
// reset by the next good connection. A
// Modbus exception answer (illegal address...) is counted as an error but keeps the
// connection; timeouts and garbled answers drop it, since a late answer would otherwise be
// taken for the next request's.
//
// Time: timestamps are Clock::WallMs() when a request is sent; schedules follow
// Clock::SteadyMs(), waiting real time for the difference (with a FakeClock, polls happen
// only as the clock is advanced).
//
// Thread-safety: SetDevices, Stats and Stop may be called from any thread. The callback runs
// on device threads but never concurrently with itself (calls are serialised); it must not
// block for long, since every device waits for it, and must not call SetDevices or Stop.
// Stop returns as soon as every device thread sees it: at once for threads that wait or read
// (an in-flight read is cut short), after at most the device timeout for a thread that is
// connecting.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/duration.h"
#include "common/status.h"
#include "node/data/reading.h"
#include "node/modbus/registers.h"

namespace verge::modbus {

struct PollerOptions {
  Millis reconnect_initial{200};
  Millis reconnect_max{10'000};
};

struct DeviceStats {
  uint64_t polls = 0;       // read requests sent
  uint64_t readings = 0;    // readings passed to the callback
  uint64_t errors = 0;      // failed connects, failed reads, values that did not decode
  uint64_t reconnects = 0;  // connection attempts after the first one
  bool connected = false;
  std::string last_error;  // empty until the first error
};

class ModbusPoller {
 public:
  using Callback = std::function<void(std::vector<data::Reading>)>;

  // `clock` must outlive the poller.
  ModbusPoller(const Clock& clock, Callback callback, PollerOptions options = {});
  ~ModbusPoller();  // Stops.
  ModbusPoller(const ModbusPoller&) = delete;
  ModbusPoller& operator=(const ModbusPoller&) = delete;

  // Replaces the polled devices. Devices whose settings are unchanged keep polling (and their
  // connection) undisturbed; changed ones restart; removed ones stop. Stats persist per name
  // while the name stays. Validates everything first (names must be unique) and changes
  // nothing if any device is invalid, returning every problem. FailedPrecondition after Stop.
  Status SetDevices(std::vector<ModbusDevice> devices);

  // Counters of the current devices, by device name.
  std::map<std::string, DeviceStats> Stats() const;

  // Stops every device thread and closes connections. Idempotent.
  void Stop();

 private:
  class Worker;
  struct Cell;

  const Clock& clock_;
  Callback callback_;
  PollerOptions options_;

  std::mutex emit_mu_;  // serialises callback_ calls

  // Serialises SetDevices and Stop, which join threads; held while joining, so Stats (which
  // needs only mu_) never waits for a device thread.
  std::mutex control_mu_;
  bool stopped_ = false;                                    // GUARDED_BY(control_mu_)
  std::map<std::string, std::unique_ptr<Worker>> workers_;  // GUARDED_BY(control_mu_)

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Cell>> cells_;  // GUARDED_BY(mu_)
};

}  // namespace verge::modbus
