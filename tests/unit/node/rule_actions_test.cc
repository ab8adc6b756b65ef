#include "node/rule_actions.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

namespace verge::node {
namespace {

using rules::Value;

rules::Row Row(int64_t i, const std::string& device = "d1") {
  rules::Object o;
  o.emplace("i", Value::Int(i));
  o.emplace("device_id", Value::String(device));
  return Value::MakeObject(std::move(o));
}

// A sink that fails its first `fail` deliveries with `code`, and can hold a delivery until
// released.
class ScriptedSink : public ActionSink {
 public:
  ScriptedSink(int fail, Code code, bool hold = false) : fail_(fail), code_(code), hold_(hold) {}
  Status Deliver(const ActionOutput& out) override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !hold_; });
    if (fail_ > 0) {
      --fail_;
      return Error(code_, "scripted failure");
    }
    for (const auto& r : out.rows) got_.push_back(r.Find("i")->int_value());
    ++deliveries_;
    return Status::Ok();
  }
  void Release() {
    std::lock_guard lock(mu_);
    hold_ = false;
    cv_.notify_all();
  }
  std::vector<int64_t> got() {
    std::lock_guard lock(mu_);
    return got_;
  }
  int deliveries() {
    std::lock_guard lock(mu_);
    return deliveries_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int fail_;
  Code code_;
  bool hold_;
  std::vector<int64_t> got_;
  int deliveries_ = 0;
};

rules::ActionSpec Spec(int retries, size_t buffer = 1024, bool single = true) {
  rules::ActionSpec s;
  s.retry_count = retries;
  s.retry_interval_ms = 1;
  s.buffer_length = buffer;
  s.send_single = single;
  return s;
}

TEST(RuleActions, TemplatesTakeColumnsOfTheRow) {
  EXPECT_EQ(ExpandTemplate("devices/{{.device_id}}/commands/{{.i}}", Row(7, "pump-2")),
            "devices/pump-2/commands/7");
  EXPECT_EQ(ExpandTemplate("a/{{.missing}}/b", Row(1)), "a//b");
  EXPECT_EQ(ExpandTemplate("no references", Row(1)), "no references");
  EXPECT_EQ(ExpandTemplate("open {{.device_id", Row(1)), "open {{.device_id");
}

TEST(RuleActions, AFailedDeliveryIsRetriedUntilItSucceeds) {
  auto* sink = new ScriptedSink(2, Code::kUnavailable);
  ActionRunner runner("r", Spec(3), std::unique_ptr<ActionSink>(sink));
  runner.Enqueue(1, {Row(1)});
  runner.Drain();
  EXPECT_EQ(sink->got(), (std::vector<int64_t>{1}));
  ActionStats s = runner.stats();
  EXPECT_EQ(s.delivered, 1u);
  EXPECT_EQ(s.retries, 2u);
  EXPECT_EQ(s.failed, 0u);
}

TEST(RuleActions, RetriesRunOutAndTheOutputIsCountedAsFailed) {
  auto* sink = new ScriptedSink(100, Code::kUnavailable);
  ActionRunner runner("r", Spec(2), std::unique_ptr<ActionSink>(sink));
  runner.Enqueue(1, {Row(1)});
  runner.Drain();
  ActionStats s = runner.stats();
  EXPECT_EQ(s.delivered, 0u);
  EXPECT_EQ(s.retries, 2u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.last_error, "scripted failure");
}

TEST(RuleActions, AnInvalidOutputIsNotRetried) {
  auto* sink = new ScriptedSink(1, Code::kInvalidArgument);
  ActionRunner runner("r", Spec(5), std::unique_ptr<ActionSink>(sink));
  runner.Enqueue(1, {Row(1), Row(2)});
  runner.Drain();
  EXPECT_EQ(sink->got(), (std::vector<int64_t>{2}));
  EXPECT_EQ(runner.stats().retries, 0u);
  EXPECT_EQ(runner.stats().failed, 1u);
}

TEST(RuleActions, AFullQueueDropsTheOldestAndNeverBlocks) {
  auto* sink = new ScriptedSink(0, Code::kOk, /*hold=*/true);
  ActionRunner runner("r", Spec(0, /*buffer=*/2), std::unique_ptr<ActionSink>(sink));
  runner.Enqueue(1, {Row(1)});
  uint64_t enqueued = 1;
  // A delivery is held; the queue keeps the newest two outputs.
  while (runner.stats().dropped == 0) {
    runner.Enqueue(1, {Row(2), Row(3), Row(4), Row(5)});
    enqueued += 4;
  }
  sink->Release();
  runner.Drain();
  std::vector<int64_t> got = sink->got();
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(std::vector<int64_t>(got.end() - 2, got.end()), (std::vector<int64_t>{4, 5}));
  ActionStats s = runner.stats();
  EXPECT_EQ(s.delivered + s.dropped, enqueued);
}

TEST(RuleActions, WithoutSendSingleAnEmissionIsOneDelivery) {
  auto* sink = new ScriptedSink(0, Code::kOk);
  ActionRunner runner("r", Spec(0, 1024, /*single=*/false), std::unique_ptr<ActionSink>(sink));
  runner.Enqueue(1, {Row(1), Row(2), Row(3)});
  runner.Drain();
  EXPECT_EQ(sink->deliveries(), 1);
  EXPECT_EQ(sink->got(), (std::vector<int64_t>{1, 2, 3}));
}

}  // namespace
}  // namespace verge::node
