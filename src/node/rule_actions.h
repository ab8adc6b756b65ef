// Rule actions: where a rule's outputs go. Each action of each rule is an ActionRunner: a
// bounded queue and one thread that delivers from it, so a slow or unreachable target (a
// webhook that hangs, a broker that is down) delays only that action, never the rule, other
// rules or ingest. A delivery that fails is tried again retry_count times, retry_interval_ms
// apart; when the retries run out the output is dropped and counted. When the queue is full
// the oldest output is dropped (and counted): the newest state of the world is what an
// operator acts on.
//
// What a message is (docs/rules.md, "Actions"): with sendSingle (the default) one message per
// output row, the row as a JSON object; otherwise one message per emission, a JSON array of its
// rows. {{.column}} in an MQTT topic or a webhook URL is replaced by that column of the row
// (of the first row without sendSingle); a missing column is an empty string.
//
// A `function` action calls a function app of the node once per row (also without
// sendSingle) and sends the rows it returns to its memory topic (or drops them when it has
// none). One delivery is all of its rows: if one call fails, nothing is published and the
// delivery fails; only "not running on this node" is retried.
//
// Thread-safety: ActionRunner is thread-safe. Sinks are called on their runner's thread only.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "node/rules/engine.h"
#include "node/rules/spec.h"
#include "verge/v1/link.pb.h"

namespace verge::node {

// One unit of delivery: one row (sendSingle) or one emission.
struct ActionOutput {
  int64_t ts_ms = 0;  // when the rule emitted it
  std::vector<rules::Row> rows;
};

// Runs the function app `app` of the node on one event (the row as a JSON object) and returns
// the rows it produced. kUnavailable "function APP is not running on this node" when it is not
// loaded (the action retries); any other error is the function's (not retried). On the node:
// runtime::FunctionRuntime::Call.
using FunctionCall = std::function<Result<std::vector<nlohmann::json>>(
    const std::string& app, const nlohmann::json& event)>;

// What actions need from the rest of the node. Each may be empty (the action then fails with
// kUnavailable and says why).
struct ActionHooks {
  std::function<Status(std::vector<v1::Alert>)> alert;  // durable in the uplink buffer on Ok
  std::function<Status(const std::string& topic, std::string_view payload, int qos, bool retain)>
      mqtt;
  std::function<Status(const rules::ActionSpec& spec, double value)> modbus;
  // Rows into a memory topic (other rules' streams); never blocks.
  std::function<void(const std::string& topic, const std::vector<rules::Row>& rows)> memory;
  FunctionCall function;
};

class ActionSink {
 public:
  virtual ~ActionSink() = default;
  virtual Status Deliver(const ActionOutput& out) = 0;
};

std::unique_ptr<ActionSink> MakeSink(const std::string& rule, const rules::ActionSpec& spec,
                                     const ActionHooks& hooks);

// {{.column}} references replaced from `row` (an object Value).
std::string ExpandTemplate(std::string_view text, const rules::Row& row);

struct ActionStats {
  uint64_t delivered = 0;  // outputs delivered
  uint64_t failed = 0;     // outputs dropped after their retries ran out
  uint64_t dropped = 0;    // outputs dropped because the queue was full
  uint64_t retries = 0;
  std::string last_error;
};

class ActionRunner {
 public:
  ActionRunner(std::string rule, rules::ActionSpec spec, std::unique_ptr<ActionSink> sink);
  ~ActionRunner();  // Stop()
  ActionRunner(const ActionRunner&) = delete;
  ActionRunner& operator=(const ActionRunner&) = delete;

  // One emission; split per row under sendSingle. Never blocks on the sink.
  void Enqueue(int64_t ts_ms, const std::vector<rules::Row>& rows);
  // Ends the thread once the delivery in progress returns; what is queued is discarded.
  void Stop();
  // Stop without waiting: nothing more is delivered after the delivery in progress. The
  // destructor (or Stop) joins.
  void RequestStop();
  ActionStats stats() const;
  const rules::ActionSpec& spec() const { return spec_; }
  // Waits until the queue is empty and nothing is being delivered (tests, benchmarks).
  void Drain();

 private:
  void Run();

  const std::string rule_;
  const rules::ActionSpec spec_;
  std::unique_ptr<ActionSink> sink_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ActionOutput> queue_;  // GUARDED_BY(mu_)
  bool stopping_ = false;           // GUARDED_BY(mu_)
  bool busy_ = false;               // GUARDED_BY(mu_)
  ActionStats stats_;               // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace verge::node
