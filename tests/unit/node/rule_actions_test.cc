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

// A function hook that doubles column i, and answers a failure for row i == `fail_at`.
struct FakeFunctions {
  int64_t fail_at = -1;
  Code fail_code = Code::kInvalidArgument;
  std::mutex mu;
  std::vector<std::string> called;  // app names, in order
  std::vector<std::pair<std::string, std::vector<rules::Row>>> published;

  ActionHooks Hooks() {
    ActionHooks h;
    h.function = [this](const std::string& app,
                        const nlohmann::json& event) -> Result<std::vector<nlohmann::json>> {
      std::lock_guard lock(mu);
      called.push_back(app);
      int64_t i = event.at("i").get<int64_t>();
      if (i == fail_at) return Error(fail_code, "handler.lua:2: scripted");
      // Two rows per event, so that several outputs per call are shown to arrive.
      return std::vector<nlohmann::json>{{{"twice", 2 * i}, {"device_id", event["device_id"]}},
                                         {{"twice", 2 * i + 1}}};
    };
    h.memory = [this](const std::string& topic, const std::vector<rules::Row>& rows) {
      std::lock_guard lock(mu);
      published.emplace_back(topic, rows);
    };
    return h;
  }
};

rules::ActionSpec FunctionSpec(const std::string& topic, int retries = 0, bool single = true) {
  rules::ActionSpec s = Spec(retries, 1024, single);
  s.kind = rules::ActionKind::kFunction;
  s.function = "scale";
  s.topic = topic;
  return s;
}

TEST(RuleActions, AFunctionGetsEachRowAndItsRowsGoToTheMemoryTopic) {
  FakeFunctions fns;
  auto spec = FunctionSpec("scaled", 0, /*single=*/false);
  ActionRunner runner("r", spec, MakeSink("r", spec, fns.Hooks()));
  runner.Enqueue(1, {Row(1, "pump-1"), Row(5, "pump-2")});
  runner.Drain();
  EXPECT_EQ(runner.stats().delivered, 1u);
  std::lock_guard lock(fns.mu);
  EXPECT_EQ(fns.called, (std::vector<std::string>{"scale", "scale"}));
  ASSERT_EQ(fns.published.size(), 1u);  // one delivery publishes all its rows at once
  EXPECT_EQ(fns.published[0].first, "scaled");
  const auto& rows = fns.published[0].second;
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].Find("twice")->int_value(), 2);
  EXPECT_EQ(rows[0].Find("device_id")->string_value(), "pump-1");
  EXPECT_EQ(rows[2].Find("twice")->int_value(), 10);
  EXPECT_EQ(rows[3].Find("twice")->int_value(), 11);
}

TEST(RuleActions, AFunctionWithoutATopicDropsItsRows) {
  FakeFunctions fns;
  auto spec = FunctionSpec("");
  ActionRunner runner("r", spec, MakeSink("r", spec, fns.Hooks()));
  runner.Enqueue(1, {Row(1), Row(2)});
  runner.Drain();
  EXPECT_EQ(runner.stats().delivered, 2u);
  std::lock_guard lock(fns.mu);
  EXPECT_EQ(fns.called.size(), 2u);
  EXPECT_TRUE(fns.published.empty());
}

TEST(RuleActions, AFunctionErrorFailsTheOutputWithoutRetries) {
  FakeFunctions fns;
  fns.fail_at = 2;
  fns.fail_code = Code::kResourceExhausted;
  auto spec = FunctionSpec("scaled", /*retries=*/3, /*single=*/false);
  ActionRunner runner("r", spec, MakeSink("r", spec, fns.Hooks()));
  runner.Enqueue(1, {Row(1), Row(2)});
  runner.Drain();
  ActionStats s = runner.stats();
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.retries, 0u);
  EXPECT_EQ(s.last_error, "function scale: handler.lua:2: scripted");
  std::lock_guard lock(fns.mu);
  EXPECT_TRUE(fns.published.empty());  // the first row's outputs are not published alone
}

TEST(RuleActions, AFunctionThatIsNotRunningIsRetriedThenCounted) {
  FakeFunctions fns;
  auto spec = FunctionSpec("scaled", /*retries=*/2);
  ActionHooks hooks = fns.Hooks();
  hooks.function = [](const std::string& app,
                      const nlohmann::json&) -> Result<std::vector<nlohmann::json>> {
    return Error(Code::kUnavailable, "function {} is not running on this node", app);
  };
  ActionRunner runner("r", spec, MakeSink("r", spec, hooks));
  runner.Enqueue(1, {Row(1)});
  runner.Drain();
  ActionStats s = runner.stats();
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.retries, 2u);
  EXPECT_EQ(s.last_error, "function scale is not running on this node");

  // A node without functions at all says the same.
  ActionRunner bare("r", spec, MakeSink("r", spec, ActionHooks{}));
  bare.Enqueue(1, {Row(1)});
  bare.Drain();
  EXPECT_EQ(bare.stats().failed, 1u);
  EXPECT_EQ(bare.stats().last_error, "function scale is not running on this node");
}

}  // namespace
}  // namespace verge::node
