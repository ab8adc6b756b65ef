#include "node/modbus/poller.h"

#include <errno.h>
#include <modbus/modbus.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <random>
#include <set>
#include <thread>

namespace verge::modbus {

struct ModbusPoller::Cell {
  std::atomic<uint64_t> polls{0};
  std::atomic<uint64_t> readings{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<bool> connected{false};
  mutable std::mutex mu;
  std::string last_error;  // GUARDED_BY(mu)

  void RecordError(const Status& st) {
    ++errors;
    std::lock_guard lk(mu);
    last_error = st.message();
  }

  DeviceStats Snapshot() const {
    DeviceStats s;
    s.polls = polls;
    s.readings = readings;
    s.errors = errors;
    s.reconnects = reconnects;
    s.connected = connected;
    std::lock_guard lk(mu);
    s.last_error = last_error;
    return s;
  }
};

namespace {

// An exception answer means the device is there and talking; anything else (timeout, reset,
// garbled frame) leaves the stream in an unknown state.
bool KeepsConnection(int err) { return err >= EMBXILFUN && err <= EMBXGTAR; }

}  // namespace

class ModbusPoller::Worker {
 public:
  using Emit = std::function<void(std::vector<data::Reading>)>;

  Worker(ModbusDevice device, std::shared_ptr<Cell> cell, const Clock& clock, PollerOptions options,
         Emit emit)
      : device_(std::move(device)),
        plan_(PlanReads(device_)),
        cell_(std::move(cell)),
        clock_(clock),
        options_(options),
        emit_(std::move(emit)),
        rng_(static_cast<uint32_t>(std::hash<std::string>{}(device_.name)) ^
             static_cast<uint32_t>(clock.SteadyMs())) {}

  ~Worker() {
    RequestStop();
    if (thread_.joinable()) thread_.join();
    if (ctx_) modbus_free(ctx_);
  }

  const ModbusDevice& device() const { return device_; }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  void RequestStop() {
    std::lock_guard lk(mu_);
    stopping_ = true;
    // Cuts short a read that waits on a hung device. Only shutdown: the device thread still
    // owns the descriptor and closes it under mu_, so it cannot be reused under our feet.
    if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
    cv_.notify_all();
  }

 private:
  bool Stopping() const { return stopping_.load(); }

  void WaitUntil(int64_t steady_ms) {
    std::unique_lock lk(mu_);
    int64_t left = steady_ms - clock_.SteadyMs();
    if (left > 0) cv_.wait_for(lk, Millis(left), [&] { return stopping_.load(); });
  }

  Millis Jitter(Millis d) {
    std::uniform_int_distribution<int64_t> half(0, d.count() / 2);
    return Millis(d.count() - d.count() / 2 + half(rng_));
  }

  void Run() {
    const int64_t start = clock_.SteadyMs();
    std::vector<int64_t> due(plan_.size(), start);
    int64_t retry_at = start;
    Millis backoff = options_.reconnect_initial;
    bool first_attempt = true;
    while (!Stopping()) {
      const int64_t next = *std::min_element(due.begin(), due.end());
      // Connects only when a poll is due, so a device polled hourly is not dialled every few
      // seconds while it is down.
      const int64_t wake = connected_ ? next : std::max(next, retry_at);
      if (clock_.SteadyMs() < wake) {
        WaitUntil(wake);
        continue;
      }
      if (!connected_) {
        if (!first_attempt) ++cell_->reconnects;
        first_attempt = false;
        if (Status st = Connect(); !st.ok()) {
          if (Stopping()) break;
          cell_->RecordError(st);
          SPDLOG_DEBUG("modbus {}: {}", device_.name, st.message());
          retry_at = clock_.SteadyMs() + Jitter(backoff).count();
          backoff = std::min(backoff * 2, options_.reconnect_max);
          continue;
        }
        backoff = options_.reconnect_initial;
      }
      const int64_t now = clock_.SteadyMs();
      std::vector<data::Reading> out;
      for (size_t i = 0; i < plan_.size() && connected_ && !Stopping(); ++i) {
        if (due[i] > now) continue;
        // A poll that comes late is not repeated to catch up: a burst would only load the
        // device and repeat the same values.
        due[i] = std::max(due[i] + plan_[i].interval.count(), now + 1);
        Read(plan_[i], out);
      }
      if (!out.empty()) {
        cell_->readings += out.size();
        emit_(std::move(out));
      }
      // A connection that broke is retried at once (the device may have restarted) for the
      // blocks still due, then with backoff if that fails.
      if (!connected_) retry_at = clock_.SteadyMs();
    }
    Disconnect();
  }

  Status Connect() {
    if (!ctx_) {
      ctx_ = modbus_new_tcp_pi(device_.host.c_str(), std::to_string(device_.port).c_str());
      if (!ctx_) {
        return Error(Code::kInvalidArgument, "cannot use {}:{}: {}", device_.host, device_.port,
                     modbus_strerror(errno));
      }
      // No libmodbus-level recovery: it would sleep and reconnect inside a read, out of
      // Stop's reach. This thread does recovery itself.
      modbus_set_error_recovery(ctx_, MODBUS_ERROR_RECOVERY_NONE);
      if (modbus_set_slave(ctx_, device_.unit_id) == -1) {
        return Error(Code::kInvalidArgument, "unit id {}: {}", device_.unit_id,
                     modbus_strerror(errno));
      }
      auto us = static_cast<uint32_t>(device_.timeout.count() * 1000);
      modbus_set_response_timeout(ctx_, us / 1'000'000, us % 1'000'000);
    }
    if (modbus_connect(ctx_) == -1) {
      int err = errno;
      modbus_close(ctx_);
      return Error(Code::kUnavailable, "connect to {}:{}: {}", device_.host, device_.port,
                   modbus_strerror(err));
    }
    std::lock_guard lk(mu_);
    fd_ = modbus_get_socket(ctx_);
    connected_ = true;
    cell_->connected = true;
    return Status::Ok();
  }

  void Disconnect() {
    std::lock_guard lk(mu_);
    if (ctx_) modbus_close(ctx_);
    fd_ = -1;
    connected_ = false;
    cell_->connected = false;
  }

  void Read(const ReadBlock& block, std::vector<data::Reading>& out) {
    std::vector<uint16_t> regs(static_cast<size_t>(block.count));
    const int64_t ts_ns = clock_.WallMs() * 1'000'000;
    ++cell_->polls;
    int rc = block.kind == RegisterSpec::kHolding
                 ? modbus_read_registers(ctx_, block.start, block.count, regs.data())
                 : modbus_read_input_registers(ctx_, block.start, block.count, regs.data());
    if (rc != block.count) {
      int err = rc == -1 ? errno : EMBBADDATA;
      if (Stopping()) return;  // the read was cut short on purpose
      cell_->RecordError(Error(Code::kUnavailable, "read {} {} register(s) at {} (unit {}): {}",
                               block.count, KindName(block.kind), block.start, device_.unit_id,
                               modbus_strerror(err)));
      if (!KeepsConnection(err)) Disconnect();
      return;
    }
    std::span<const uint16_t> all(regs);
    for (size_t idx : block.registers) {
      const RegisterSpec& spec = device_.registers[idx];
      auto value = Decode(all.subspan(static_cast<size_t>(spec.address - block.start),
                                      static_cast<size_t>(RegisterCount(spec.type))),
                          spec);
      if (!value.ok()) {
        cell_->RecordError(value.status());
        continue;
      }
      out.push_back(data::Reading{device_.name, spec.metric, ts_ns, *value});
    }
  }

  const ModbusDevice device_;
  const std::vector<ReadBlock> plan_;
  const std::shared_ptr<Cell> cell_;
  const Clock& clock_;
  const PollerOptions options_;
  const Emit emit_;
  std::minstd_rand rng_;  // device thread only
  std::thread thread_;

  modbus_t* ctx_ = nullptr;  // device thread only (and the destructor, after the join)
  bool connected_ = false;   // device thread only

  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};  // written under mu_, so waits on cv_ cannot miss it
  int fd_ = -1;                        // GUARDED_BY(mu_): the connected socket, for shutdown
};

ModbusPoller::ModbusPoller(const Clock& clock, Callback callback, PollerOptions options)
    : clock_(clock), callback_(std::move(callback)), options_(options) {}

ModbusPoller::~ModbusPoller() { Stop(); }

Status ModbusPoller::SetDevices(std::vector<ModbusDevice> devices) {
  std::string errors;
  std::set<std::string> names;
  for (const ModbusDevice& d : devices) {
    std::string error;
    if (Status st = Validate(d); !st.ok()) error = st.message();
    if (!d.name.empty() && !names.insert(d.name).second) {
      error = fmt::format("device \"{}\": name used twice", d.name);
    }
    if (error.empty()) continue;
    if (!errors.empty()) errors += "; ";
    errors += error;
  }
  if (!errors.empty()) return Status(Code::kInvalidArgument, errors);

  std::lock_guard control(control_mu_);
  if (stopped_) return Error(Code::kFailedPrecondition, "the Modbus poller is stopped");
  // Stop all that go away or change first, together, so that their timeouts overlap.
  std::vector<std::unique_ptr<Worker>> retiring;
  for (auto it = workers_.begin(); it != workers_.end();) {
    auto same = std::find_if(devices.begin(), devices.end(), [&](const ModbusDevice& d) {
      return d.name == it->first && d == it->second->device();
    });
    if (same != devices.end()) {
      ++it;
      continue;
    }
    it->second->RequestStop();
    retiring.push_back(std::move(it->second));
    it = workers_.erase(it);
  }
  retiring.clear();  // joins

  std::lock_guard lk(mu_);
  for (auto it = cells_.begin(); it != cells_.end();) {
    it = names.count(it->first) ? std::next(it) : cells_.erase(it);
  }
  for (ModbusDevice& d : devices) {
    auto& cell = cells_[d.name];
    if (!cell) cell = std::make_shared<Cell>();
    if (workers_.count(d.name)) continue;
    std::string name = d.name;
    auto worker = std::make_unique<Worker>(std::move(d), cell, clock_, options_,
                                           [this](std::vector<data::Reading> readings) {
                                             std::lock_guard emit(emit_mu_);
                                             callback_(std::move(readings));
                                           });
    worker->Start();
    workers_[name] = std::move(worker);
  }
  return Status::Ok();
}

std::map<std::string, DeviceStats> ModbusPoller::Stats() const {
  std::lock_guard lk(mu_);
  std::map<std::string, DeviceStats> out;
  for (const auto& [name, cell] : cells_) out[name] = cell->Snapshot();
  return out;
}

void ModbusPoller::Stop() {
  std::lock_guard control(control_mu_);
  if (stopped_) return;
  stopped_ = true;
  for (auto& [name, worker] : workers_) worker->RequestStop();
  workers_.clear();  // joins
}

}  // namespace verge::modbus
