// NetLab: a private network for fault tests. A hub network namespace holds a Linux bridge; each
// member (the cloud, n1..n5) gets its own network namespace joined to the bridge by a veth pair,
// with one address (10.99.0.N/24) on its `eth0` and `lo` up. Nothing is added to the namespace
// the test runs in: no address, route, rule or qdisc. Namespace names start with the test's pid,
// so parallel test processes do not collide; the destructor deletes them all, which takes their
// interfaces, iptables rules and qdiscs with them.
//
// Faults are applied inside a member's namespace, on its `eth0` only (so traffic on its `lo`,
// e.g. a device posting to its node's local API, is never affected): iptables in both directions
// (INPUT and OUTPUT) for loss and partitions, and a tbf qdisc on both ends of the veth pair for
// bandwidth. Latency needs a delaying proxy (`verge-delay-proxy`): this kernel has no netem.
//
// Thread-safety: set up and faults from one thread (the test's). InNetns() may be called from
// any thread; the function runs on a new thread that has joined the namespace.
#pragma once

#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "common/status.h"

namespace verge::testing {

// Joins the calling thread to the network namespace /run/netns/NAME (setns affects only the
// calling thread, and threads it starts afterwards).
Status EnterNetns(const std::string& name);

// Runs `fn` on a new thread inside network namespace `name` and returns its result. Throws
// std::runtime_error if the namespace cannot be entered; exceptions of `fn` are rethrown here.
template <typename F>
auto InNetns(const std::string& name, F&& fn) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  std::exception_ptr error;
  Status entered;
  if constexpr (std::is_void_v<R>) {
    std::thread t([&] {
      entered = EnterNetns(name);
      if (!entered.ok()) return;
      try {
        fn();
      } catch (...) {
        error = std::current_exception();
      }
    });
    t.join();
    if (!entered.ok()) throw std::runtime_error(entered.ToString());
    if (error) std::rethrow_exception(error);
  } else {
    std::optional<R> out;
    std::thread t([&] {
      entered = EnterNetns(name);
      if (!entered.ok()) return;
      try {
        out.emplace(fn());
      } catch (...) {
        error = std::current_exception();
      }
    });
    t.join();
    if (!entered.ok()) throw std::runtime_error(entered.ToString());
    if (error) std::rethrow_exception(error);
    return std::move(*out);
  }
}

class NetLab {
 public:
  // Creates the hub and one namespace per member (names of at most 8 characters of [a-z0-9]).
  // Fails with the reason when this process is not root or namespaces cannot be made; the
  // caller skips then.
  static Result<std::unique_ptr<NetLab>> Create(const std::vector<std::string>& members);
  ~NetLab();
  NetLab(const NetLab&) = delete;
  NetLab& operator=(const NetLab&) = delete;

  // The namespace name of `member` (for Process, Cloud, StartNode and InNetns).
  std::string Netns(const std::string& member) const;
  // The member's address on the bridge, e.g. "10.99.0.1".
  std::string Address(const std::string& member) const;

  // Drops each packet through the member's eth0, in and out, with probability `fraction`
  // (0 removes the loss).
  Status SetLoss(const std::string& member, double fraction);
  // Drops everything through the member's eth0 (on), or stops doing so (off).
  Status Partition(const std::string& member, bool on);
  // Caps the member's link to `kbit` kbit/s in each direction (tbf on the member's eth0 and on
  // the hub's end of the pair); 0 removes the cap.
  Status Bandwidth(const std::string& member, int kbit);
  // Removes every fault of the member.
  Status ClearFaults(const std::string& member);

  // SIGKILLs whatever still runs in the member namespaces (children of this test only: nothing
  // else can be in them), so that deleting them frees their interfaces.
  void KillStragglers();

 private:
  NetLab() = default;
  Status AddMember(const std::string& member, int index);
  Status Iptables(const std::string& member, const std::vector<std::string>& args);

  std::string prefix_;                // "vf<pid>-"
  std::vector<std::string> created_;  // namespaces, in creation order
  std::map<std::string, int> index_;  // member -> 1..N
  std::map<std::string, double> loss_;
  std::map<std::string, bool> partitioned_;
};

}  // namespace verge::testing
