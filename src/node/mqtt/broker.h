// MosquittoBroker: the node's own MQTT broker, where devices publish their readings. It writes
// Mosquitto's config, password and ACL files into a work dir (DATA/mqtt, see broker_files.h)
// from the node's device list, runs `mosquitto -c DATA/mqtt/mosquitto.conf` as a child process
// (stdout and stderr to DATA/mqtt/mosquitto.log, copied to .1 and truncated past
// max_log_bytes), restarts it with jittered exponential backoff when it dies, and applies
// device-list changes by rewriting the password and ACL files and sending SIGHUP, on which
// Mosquitto 2.0 rereads both and disconnects clients whose credentials no longer hold. The node's
// subscriber (subscriber.h) connects with node_account().
//
// The gate. A QoS 1 message that no subscription matches is acknowledged to the device and then
// dropped, so a broker must never admit a device before the node's persistent session and its
// subscription exist in it (the first start ever, or a restart whose database lost them). Each
// time it starts Mosquitto, the broker therefore first writes a password file holding only the
// node's account, connects as the node's client id (clean session off) and subscribes
// devices/+/telemetry at QoS 1 if the session is new, then aborts that connection without
// acknowledging anything (queued messages stay queued for the real subscriber), and only then
// writes the devices into the password file and sends SIGHUP. Devices that connect earlier are
// refused ("not authorised") and retry. If the node's subscriber happens to be connected at
// that moment it is taken over once and reconnects; nothing is lost.
//
// Privileges. Mosquitto started as root switches to the config's `user` before it reads the
// password and ACL files; the node keeps them in its root-owned 0700 data dir, so the broker is
// told `user root` when the node runs as root (docs/mqtt.md discusses the trade-off). A node
// running as another user runs Mosquitto as that user.
//
// Lifetime. Stop() sends SIGTERM (Mosquitto then saves its database), SIGKILL after
// stop_timeout, and reaps. The child is started with PR_SET_PDEATHSIG(SIGTERM) from the
// supervisor thread, which lives as long as the child, so it also gets SIGTERM if the node
// process dies, even by SIGKILL. Its pid is kept in DATA/mqtt/mosquitto.pid, and Start() stops
// a broker left behind by a previous node process (checked by its command line) before it
// starts its own. The child runs in its own process group, so a Ctrl-C meant for the node does
// not reach it.
//
// Thread-safety: every public method may be called from any thread. One supervisor thread per
// started broker forks, waits for and restarts the child; Start, SetDevices and Stop are
// serialised; Stats never waits for the supervisor.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/duration.h"
#include "common/fs.h"
#include "common/status.h"
#include "node/mqtt/broker_files.h"
#include "node/mqtt/topics.h"

namespace verge::mqtt {

struct BrokerOptions {
  std::string work_dir;                 // REQUIRES: set; created (0700) if missing
  std::string listen = "0.0.0.0:1883";  // the devices' listener, HOST:PORT
  // The node subscriber's client id (NodeClientId): the session the gate creates.
  std::string client_id = std::string(kNodeUser);
  std::string mosquitto_path = "/usr/sbin/mosquitto";
  bool publish_rejections = true;  // ACL: devices read devices/<name>/rejected
  size_t max_queued_messages = 1'000'000;
  uint64_t max_queued_bytes = 256ull << 20;
  int max_inflight_messages = 100;
  uint32_t max_packet_bytes = 2u << 20;  // a device sending a larger packet is disconnected
  Millis autosave_interval{10'000};
  Millis start_timeout{15'000};  // from spawning Mosquitto to admitting devices
  Millis stop_timeout{5'000};    // SIGTERM, then SIGKILL
  Millis restart_initial{250};
  Millis restart_max{10'000};
  uint64_t max_log_bytes = 10ull << 20;  // mosquitto.log is moved to .1 past this size
};

// How the node's subscriber reaches this broker.
struct NodeAccount {
  std::string host;  // loopback when the listener is a wildcard address
  int port = 0;
  std::string username;
  std::string password;  // random per Start(); only its hash is on disk
  std::string client_id;
};

struct BrokerStats {
  bool running = false;   // a Mosquitto process is up and admits devices
  pid_t pid = 0;          // of the current process; 0 when none
  uint64_t starts = 0;    // processes spawned
  uint64_t restarts = 0;  // spawned after an unexpected exit
  uint64_t reloads = 0;   // SIGHUPs sent for device-list changes
  size_t devices = 0;
  std::string last_exit;   // "exited with code 1", "killed by signal 9"; empty if none yet
  std::string last_error;  // the latest failure to start or open; empty if none
};

class MosquittoBroker {
 public:
  // `clock` must outlive the broker.
  MosquittoBroker(const Clock& clock, BrokerOptions options);
  ~MosquittoBroker();  // Stops.
  MosquittoBroker(const MosquittoBroker&) = delete;
  MosquittoBroker& operator=(const MosquittoBroker&) = delete;

  // Validates the options and `devices` (all problems at once), locks the work dir (another
  // broker using it is a FailedPrecondition), stops a leftover broker of a previous node
  // process, writes the files, starts Mosquitto and returns once it admits devices. On failure
  // returns why (Mosquitto's last log lines included), with nothing left running.
  // FailedPrecondition if already started, or after Stop.
  Status Start(std::vector<BrokerDevice> devices);

  // Replaces the device list: rewrites the password and ACL files, then reloads the running
  // broker (SIGHUP; Mosquitto applies it within a moment, asynchronously). Validates first and
  // changes nothing if any device is invalid. While Mosquitto is down or gated the new list is
  // what the next opening admits. FailedPrecondition before Start and after Stop.
  Status SetDevices(std::vector<BrokerDevice> devices);

  // REQUIRES: Start() succeeded.
  NodeAccount node_account() const;

  BrokerStats Stats() const;

  // Stops Mosquitto (SIGTERM, then SIGKILL after stop_timeout), reaps it and the supervisor.
  // Idempotent.
  void Stop();

 private:
  void Supervise();
  // Spawns Mosquitto; REQUIRES: mu_ held. Returns the pid or an error.
  Result<pid_t> SpawnLocked();
  // Waits for the fresh process `pid` to accept the node, creates the node's session and
  // opens the gate.
  Status OpenGate(pid_t pid, int64_t deadline_ms);
  Status WriteFilesLocked(bool gated);
  void StopLeftover();
  // Moves mosquitto.log to mosquitto.log.1 once it is past max_log_bytes.
  void RotateLogIfLarge();
  std::string LogTail() const;

  const Clock& clock_;
  const BrokerOptions options_;
  const BrokerPaths paths_;
  BrokerSettings settings_;
  NodeAccount account_;
  std::string node_hash_;

  std::mutex control_mu_;        // serialises Start, SetDevices and Stop
  std::thread supervisor_;       // GUARDED_BY(control_mu_)
  std::optional<DirLock> lock_;  // GUARDED_BY(control_mu_); the work dir's, while started

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;          // GUARDED_BY(mu_)
  bool stopping_ = false;         // GUARDED_BY(mu_)
  bool supervisor_done_ = false;  // GUARDED_BY(mu_)
  // The first start's outcome, for Start(): set once the gate opened or the start failed.
  bool first_outcome_ = false;         // GUARDED_BY(mu_)
  Status first_status_;                // GUARDED_BY(mu_)
  std::vector<BrokerDevice> devices_;  // GUARDED_BY(mu_)
  pid_t pid_ = 0;                      // GUARDED_BY(mu_); alive (not yet reaped) while non-zero
  bool open_ = false;                  // GUARDED_BY(mu_); the running process admits devices
  uint64_t log_offset_ = 0;            // GUARDED_BY(mu_); size of the log when pid_ started
  BrokerStats stats_;  // GUARDED_BY(mu_); running, pid and devices filled in by Stats()
};

}  // namespace verge::mqtt
