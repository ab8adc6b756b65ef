// Micro-benchmarks of Lua function calls (src/node/runtime/function.h), one thread, in-process:
//   BM_FunctionCall
//       FunctionRuntime::Call with a typical handler: it reads three fields of the event,
//       computes, and returns a table of three fields:
//         function handle(e)
//           local f = e.temp * 1.8 + 32
//           return {device_id = e.device_id, temp_f = f, hot = f > e.limit}
//         end
//       on {"device_id": "boiler-0017", "temp": 71.5, "limit": 150.0, "ts": 1763800000000}.
//       Everything a call costs is in the loop: the event JSON → Lua table, the call under the
//       instruction hook and the memory-limited allocator, the table → JSON row.
//   BM_FunctionCallNil
//       The same event to a handler that returns nil: the fixed cost of a call.
//   BM_FunctionAction
//       The rule action path (rule_actions.h): the `function` action's sink delivering one
//       output row (a rules::Row) with a memory topic, i.e. Row → JSON, the call above, JSON
//       → Row, and the publish hook (which only counts here). Without the action's queue and
//       thread hand-off, which every action kind shares.
// items_per_second counts calls. Limits are the defaults (10 M instructions, 16 MB).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "node/rule_actions.h"
#include "node/rules/json_value.h"
#include "node/runtime/function.h"

namespace {

using nlohmann::json;
using verge::node::runtime::FunctionRuntime;
using verge::node::runtime::Kind;
using verge::node::runtime::WorkloadSpec;

constexpr const char* kTypical = R"LUA(
function handle(e)
  local f = e.temp * 1.8 + 32
  return {device_id = e.device_id, temp_f = f, hot = f > e.limit}
end
)LUA";

constexpr const char* kNil = "function handle(e) return nil end";

const json& Event() {
  static const json event = {
      {"device_id", "boiler-0017"}, {"temp", 71.5}, {"limit", 150.0}, {"ts", 1763800000000}};
  return event;
}

// A runtime with `script` loaded as app `app`; aborts the benchmark when it does not load.
class Loaded {
 public:
  Loaded(const std::string& app, const char* script, benchmark::State& state) {
    dir_ = std::filesystem::temp_directory_path() /
           ("verge-function-bench-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    WorkloadSpec spec;
    spec.id = app + "-0";
    spec.app = app;
    spec.kind = Kind::kFunction;
    spec.artifact = (dir_ / (app + ".lua")).string();
    std::ofstream(spec.artifact) << script;
    auto h = rt.Start(spec);
    if (!h.ok()) state.SkipWithError(h.status().message().c_str());
  }
  ~Loaded() { std::filesystem::remove_all(dir_); }
  Loaded(const Loaded&) = delete;
  Loaded& operator=(const Loaded&) = delete;

  FunctionRuntime rt;

 private:
  std::filesystem::path dir_;
};

void RunCalls(benchmark::State& state, const char* script, size_t want_rows) {
  Loaded fn("bench", script, state);
  auto check = fn.rt.Call("bench", Event());
  if (!check.ok() || check->size() != want_rows) {
    state.SkipWithError(check.ok() ? "unexpected rows" : check.status().message().c_str());
    return;
  }
  for (auto _ : state) {
    auto rows = fn.rt.Call("bench", Event());
    benchmark::DoNotOptimize(rows);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_FunctionCall(benchmark::State& state) { RunCalls(state, kTypical, 1); }
BENCHMARK(BM_FunctionCall);

void BM_FunctionCallNil(benchmark::State& state) { RunCalls(state, kNil, 0); }
BENCHMARK(BM_FunctionCallNil);

void BM_FunctionAction(benchmark::State& state) {
  Loaded fn("bench", kTypical, state);
  size_t published = 0;
  verge::node::ActionHooks hooks;
  hooks.function = [&](const std::string& app, const json& event) {
    return fn.rt.Call(app, event);
  };
  hooks.memory = [&](const std::string&, const std::vector<verge::rules::Row>& rows) {
    published += rows.size();
  };
  verge::rules::ActionSpec spec;
  spec.kind = verge::rules::ActionKind::kFunction;
  spec.function = "bench";
  spec.topic = "scaled";
  auto sink = verge::node::MakeSink("bench-rule", spec, hooks);
  verge::node::ActionOutput out;
  out.ts_ms = 1763800000000;
  out.rows.push_back(verge::rules::FromJson(Event()));
  for (auto _ : state) {
    auto st = sink->Deliver(out);
    if (!st.ok()) {
      state.SkipWithError(st.message().c_str());
      break;
    }
  }
  if (published != static_cast<size_t>(state.iterations()))
    state.SkipWithError("not every call published its row");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_FunctionAction);

}  // namespace
