// verge-devsim modbus: a Modbus TCP server (libmodbus) serving ModbusMap() once per unit id.
//
// Threads: the calling thread serves every client from one poll() loop (requests are tiny
// and answered from memory); an updater thread advances the signals every `update` and
// writes them into the register tables, under the same mutex as the replies so that a
// 32-bit value is never read half-updated. On stop the updater wakes the poll loop through
// an eventfd.
#include <arpa/inet.h>
#include <errno.h>
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <iostream>

#include "devsim/modbus_map.h"
#include "devsim/modes.h"

namespace verge::devsim {
namespace {

constexpr size_t kMaxClients = 64;

std::string BoundAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return fmt::format("[{}]:{}", host, ntohs(a->sin6_port));
  }
  auto* a = reinterpret_cast<sockaddr_in*>(&ss);
  inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
  return fmt::format("{}:{}", host, ntohs(a->sin_port));
}

// The simulated devices: one register table pair and one set of signals per unit id.
class Devices {
 public:
  Devices(int count, uint64_t seed) {
    for (int unit = 1; unit <= count; ++unit) {
      maps_.push_back(modbus_mapping_new(0, 0, kMapTableSize, kMapTableSize));
      auto& signals = signals_.emplace_back();
      for (const SimRegister& r : ModbusMap()) {
        signals.emplace_back(r.signal,
                             DeriveSeed(seed, fmt::format("unit{}/{}", unit, r.reg.metric)));
      }
    }
  }
  ~Devices() {
    for (modbus_mapping_t* m : maps_) modbus_mapping_free(m);
  }
  Devices(const Devices&) = delete;
  Devices& operator=(const Devices&) = delete;

  bool ok() const {
    return std::all_of(maps_.begin(), maps_.end(), [](auto* m) { return m != nullptr; });
  }

  // Advances every signal by dt_s and writes the new values.
  void Update(double dt_s) {
    std::lock_guard lk(mu_);
    for (size_t d = 0; d < maps_.size(); ++d) {
      for (size_t i = 0; i < ModbusMap().size(); ++i) {
        const modbus::RegisterSpec& reg = ModbusMap()[i].reg;
        auto words = modbus::Encode(signals_[d][i].Next(dt_s), reg);
        if (!words.ok()) {  // the map's spans fit their types (unit-tested): a bug
          spdlog::error("unit {}: {}", d + 1, words.status().message());
          continue;
        }
        uint16_t* table = reg.kind == modbus::RegisterSpec::kInput ? maps_[d]->tab_input_registers
                                                                   : maps_[d]->tab_registers;
        std::copy(words->begin(), words->end(), table + reg.address);
      }
    }
  }

  // Answers one request from `ctx` (whose socket is the client's). Returns false when the
  // answer could not be sent.
  bool Reply(modbus_t* ctx, const uint8_t* req, int len) {
    int unit = req[modbus_get_header_length(ctx) - 1];
    // 0 and 255 address "the server itself" on Modbus TCP: the first device.
    if (unit == 0 || unit == 255) unit = 1;
    std::lock_guard lk(mu_);
    if (unit < 1 || unit > static_cast<int>(maps_.size())) {
      return modbus_reply_exception(ctx, req, MODBUS_EXCEPTION_GATEWAY_TARGET) != -1;
    }
    return modbus_reply(ctx, req, len, maps_[static_cast<size_t>(unit - 1)]) != -1;
  }

 private:
  std::mutex mu_;
  std::vector<modbus_mapping_t*> maps_;       // GUARDED_BY(mu_)
  std::vector<std::vector<Signal>> signals_;  // GUARDED_BY(mu_)
};

}  // namespace

int RunModbus(const ModbusOptions& o) {
  Devices devices(o.devices, o.seed);
  if (!devices.ok()) {
    spdlog::error("cannot allocate register tables");
    return 1;
  }
  devices.Update(0);
  modbus_t* ctx = modbus_new_tcp_pi(o.host.c_str(), o.port.c_str());
  if (!ctx) {
    spdlog::error("cannot use {}:{}: {}", o.host, o.port, modbus_strerror(errno));
    return 1;
  }
  // A client that sends half a request must not hold the other clients up for long.
  modbus_set_indication_timeout(ctx, 1, 0);
  int listen_fd = modbus_tcp_pi_listen(ctx, 16);
  if (listen_fd == -1) {
    spdlog::error("cannot listen on {}:{}: {}", o.host, o.port, modbus_strerror(errno));
    modbus_free(ctx);
    return 1;
  }
  int wake_fd = eventfd(0, EFD_CLOEXEC);
  if (wake_fd == -1) {
    spdlog::error("eventfd: {}", strerror(errno));
    close(listen_fd);
    modbus_free(ctx);
    return 1;
  }
  std::cout << "listening " << BoundAddress(listen_fd) << std::endl;
  spdlog::info("serving {} simulated device(s) (unit ids 1..{})", o.devices, o.devices);

  StopFlag stop;
  SignalWatcher watcher(stop);
  std::thread updater([&] {
    auto next = std::chrono::steady_clock::now();
    const double dt_s = std::chrono::duration<double>(o.update).count();
    for (;;) {
      next += o.update;
      if (stop.WaitUntil(next)) break;
      // Simulated time advances by the nominal step, so a seed gives the same values
      // whatever the scheduling jitter.
      devices.Update(dt_s);
    }
    uint64_t one = 1;
    if (write(wake_fd, &one, sizeof one) < 0) spdlog::error("eventfd: {}", strerror(errno));
  });

  std::vector<int> clients;
  uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
  int code = 0;
  for (;;) {
    std::vector<pollfd> fds = {{wake_fd, POLLIN, 0}, {listen_fd, POLLIN, 0}};
    for (int c : clients) fds.push_back({c, POLLIN, 0});
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("poll: {}", strerror(errno));
      code = 1;
      break;
    }
    if (fds[0].revents) break;
    if (fds[1].revents & POLLIN) {
      int c = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0 && clients.size() >= kMaxClients) {
        spdlog::warn("too many clients, refusing one");
        close(c);
      } else if (c >= 0) {
        // A client that stops reading must not block the loop for long either.
        timeval tv{1, 0};
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        clients.push_back(c);
      }
    }
    std::vector<int> gone;
    for (size_t i = 2; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      modbus_set_socket(ctx, fds[i].fd);
      int len = modbus_receive(ctx, query);
      // len == 0: a request libmodbus chose to ignore; -1: closed, reset or garbled.
      if (len < 0 || (len > 0 && !devices.Reply(ctx, query, len))) gone.push_back(fds[i].fd);
    }
    for (int g : gone) {
      close(g);
      clients.erase(std::find(clients.begin(), clients.end(), g));
    }
  }
  stop.Stop();
  updater.join();
  for (int c : clients) close(c);
  close(listen_fd);
  close(wake_fd);
  modbus_set_socket(ctx, -1);
  modbus_free(ctx);
  return code;
}

}  // namespace verge::devsim
