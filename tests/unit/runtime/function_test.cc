#include "node/runtime/function.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace verge::node::runtime {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

class FunctionRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("verge-function-test-{}-{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  WorkloadSpec Spec(const std::string& app, const std::string& script) {
    std::string path = (dir_ / (app + ".lua")).string();
    std::ofstream(path) << script;
    WorkloadSpec spec;
    spec.id = app + "-0";
    spec.app = app;
    spec.kind = Kind::kFunction;
    spec.dir = (dir_ / spec.id).string();
    spec.artifact = path;
    spec.max_instructions = 1'000'000;
    spec.function_memory_mb = 8;
    return spec;
  }

  // Starts `script` as app `app`; fails the test if it does not load.
  Handle Load(const std::string& app, const std::string& script) {
    auto h = rt_->Start(Spec(app, script));
    EXPECT_TRUE(h.ok()) << h.status().message();
    return h.ok() ? *h : Handle{};
  }

  fs::path dir_;
  std::unique_ptr<FunctionRuntime> rt_ = std::make_unique<FunctionRuntime>();
};

constexpr const char* kEcho = "function handle(e) return e end";

TEST_F(FunctionRuntimeTest, ValuesOfEveryTypeCrossBothWays) {
  Load("echo", kEcho);
  json in = json::parse(R"J({
    "int": 42, "negative": -7, "big": 9007199254740993, "float": 2.5, "whole_float": 3.0,
    "yes": true, "no": false, "text": "héllo ✓", "empty_text": "",
    "nested": {"a": {"b": [1, "two", 3.5, false, {"c": null}]}},
    "empty_array": [], "empty_object": {}, "array_with_null": [1, null, 3],
    "dropped": null
  })J");
  auto out = rt_->Call("echo", in);
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ(out->size(), 1u);
  const json& r = out->front();
  json want = in;
  want.erase("dropped");                         // null fields are absent in Lua
  want["nested"]["a"]["b"][4] = json::object();  // so is {"c": null}'s only field
  EXPECT_EQ(r, want) << r.dump();
  EXPECT_TRUE(r["int"].is_number_integer());
  EXPECT_EQ(r["big"].get<int64_t>(), 9007199254740993);  // no detour through a double
  EXPECT_TRUE(r["float"].is_number_float());
  EXPECT_TRUE(r["whole_float"].is_number_float());
  EXPECT_TRUE(r["empty_array"].is_array());
  EXPECT_TRUE(r["empty_object"].is_object());

  // An unsigned beyond int64 becomes a float; a bare scalar event arrives as itself.
  Load("typeof", R"LUA(function handle(e) return {t = math.type(e) or type(e), v = e} end)LUA");
  auto u = rt_->Call("typeof", json(18446744073709551615ULL));
  ASSERT_TRUE(u.ok()) << u.status().message();
  EXPECT_EQ(u->front()["t"], "float");
  auto s = rt_->Call("typeof", json("x"));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->front(), (json{{"t", "string"}, {"v", "x"}}));
}

TEST_F(FunctionRuntimeTest, LuaValuesBecomeJson) {
  Load("conv", R"LUA(
    function handle(e)
      if e.k == "numbers" then return {i = 7, f = 0.5, nan = 0/0, inf = math.huge, ["1"] = 1} end
      if e.k == "keys" then return {[1] = "a", [3] = "c", x = true} end
      if e.k == "sequence" then return {list = {10, 20, 30}} end
    end)LUA");
  auto n = rt_->Call("conv", {{"k", "numbers"}});
  ASSERT_TRUE(n.ok()) << n.status().message();
  const json& r = n->front();
  EXPECT_TRUE(r["i"].is_number_integer());
  EXPECT_EQ(r["f"], 0.5);
  EXPECT_TRUE(r["nan"].is_null());  // JSON has no NaN or infinity
  EXPECT_TRUE(r["inf"].is_null());
  auto k = rt_->Call("conv", {{"k", "keys"}});
  ASSERT_TRUE(k.ok()) << k.status().message();
  EXPECT_EQ(k->front(), (json{{"1", "a"}, {"3", "c"}, {"x", true}}));
  auto s = rt_->Call("conv", {{"k", "sequence"}});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->front()["list"], json::array({10, 20, 30}));
}

TEST_F(FunctionRuntimeTest, TheHandlerReturnsOneRowNoneOrSeveral) {
  Load("shape", R"LUA(
    function handle(e)
      if e.k == "one" then return {a = 1} end
      if e.k == "none" then return nil end
      if e.k == "empty" then return {} end
      if e.k == "many" then return {{a = 1}, {a = 2}, {}} end
      if e.k == "number" then return 5 end
      if e.k == "mixed" then return {{a = 1}, 2} end
    end)LUA");
  auto rows = [&](const char* k) { return rt_->Call("shape", {{"k", k}}); };
  ASSERT_TRUE(rows("one").ok());
  EXPECT_EQ(*rows("one"), (std::vector<json>{json{{"a", 1}}}));
  EXPECT_TRUE(rows("none")->empty());
  EXPECT_TRUE(rows("empty")->empty());
  auto many = rows("many");
  ASSERT_TRUE(many.ok()) << many.status().message();
  ASSERT_EQ(many->size(), 3u);
  EXPECT_EQ((*many)[1], json({{"a", 2}}));
  EXPECT_EQ((*many)[2], json::object());
  auto number = rows("number");
  ASSERT_FALSE(number.ok());
  EXPECT_NE(number.status().message().find("not a number"), std::string::npos)
      << number.status().message();
  auto mixed = rows("mixed");
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.status().message().find("element 2"), std::string::npos);
}

TEST_F(FunctionRuntimeTest, ResultsThatAreNotJsonAreErrorsWithTheirPlace) {
  Load("bad", R"LUA(
    function handle(e)
      if e.k == "cycle" then local t = {x = {}}; t.x.back = t; return t end
      if e.k == "function" then return {cb = {print}} end
      if e.k == "utf8" then return {s = "\xff\xfe"} end
      if e.k == "deep" then local t = {}; local c = t; for i = 1, 100 do c.n = {}; c = c.n end; return t end
      if e.k == "key" then return {[true] = 1} end
    end)LUA");
  auto err = [&](const char* k) {
    auto r = rt_->Call("bad", {{"k", k}});
    EXPECT_FALSE(r.ok()) << k;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << k;
    return r.status().message();
  };
  EXPECT_NE(err("cycle").find("cycle"), std::string::npos);
  std::string f = err("function");
  EXPECT_NE(f.find(".cb[1]"), std::string::npos) << f;
  EXPECT_NE(f.find("a function"), std::string::npos) << f;
  EXPECT_NE(err("utf8").find("UTF-8"), std::string::npos);
  EXPECT_NE(err("deep").find("nested deeper than 64"), std::string::npos);
  EXPECT_NE(err("key").find("boolean"), std::string::npos);

  // Input nested too deeply is refused the same way.
  json deep = json::object();
  json* c = &deep;
  for (int i = 0; i < 100; ++i) c = &((*c)["n"] = json::object());
  auto r = rt_->Call("bad", deep);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nested deeper"), std::string::npos);
  // And the function still works.
  EXPECT_TRUE(rt_->Call("bad", {{"k", "none"}}).ok());
}

TEST_F(FunctionRuntimeTest, AnInfiniteLoopStopsAtTheInstructionLimitAndTheFunctionGoesOn) {
  Load("loop", R"LUA(
    function handle(e)
      if e.k == "loop" then while true do end end
      if e.k == "swallow" then
        while true do pcall(function() while true do end end) end
      end
      if e.k == "coroutine" then coroutine.wrap(function() while true do end end)() end
      return {ok = true}
    end)LUA");
  for (const char* k : {"loop", "swallow", "coroutine"}) {
    auto r = rt_->Call("loop", {{"k", k}});
    ASSERT_FALSE(r.ok()) << k;
    EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << k;
    EXPECT_NE(r.status().message().find("instruction limit exceeded"), std::string::npos)
        << r.status().message();
    auto ok = rt_->Call("loop", {{"k", "fine"}});
    ASSERT_TRUE(ok.ok()) << k << ": " << ok.status().message();
    EXPECT_EQ(ok->front(), json({{"ok", true}}));
  }
  auto stats = rt_->Stats("loop-0");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->calls, 6u);
  EXPECT_EQ(stats->errors, 3u);
  EXPECT_NE(stats->last_error.find("instruction limit"), std::string::npos);
}

TEST_F(FunctionRuntimeTest, AnAllocationBombStopsAtTheMemoryLimit) {
  Load("bomb", R"LUA(
    n = 0
    function handle(e)
      n = n + 1
      if e.k == "bomb" then
        local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 1000) end
      end
      if e.k == "rep" then return {s = string.rep("x", 1e9)} end
      if e.k == "leak" then
        leak = {} for i = 1, 1e9 do leak[i] = string.rep("y", 1000) end
      end
      return {n = n}
    end)LUA");
  for (const char* k : {"bomb", "rep", "leak"}) {
    auto r = rt_->Call("bomb", {{"k", k}});
    ASSERT_FALSE(r.ok()) << k;
    EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << k;
    EXPECT_NE(r.status().message().find("memory limit exceeded"), std::string::npos)
        << r.status().message();
    auto ok = rt_->Call("bomb", {{"k", "fine"}});
    ASSERT_TRUE(ok.ok()) << k << ": " << ok.status().message();
  }
  // The leak filled the state's globals: it was replaced by a fresh one, whose counter
  // started over (the first state had counted 6 calls).
  auto r = rt_->Call("bomb", {{"k", "fine"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->front()["n"], 2);
  auto stats = rt_->Stats("bomb-0");
  ASSERT_TRUE(stats.ok());
  EXPECT_LT(stats->memory_bytes, 8u << 20);
  EXPECT_GT(stats->memory_bytes, 0u);
}

TEST_F(FunctionRuntimeTest, TheSandboxHasNoWayOut) {
  Load("sandbox", R"LUA(
    function handle(e)
      return {
        io = type(io), require = type(require), loadfile = type(loadfile),
        dofile = type(dofile), debug = type(debug), package = type(package),
        collectgarbage = type(collectgarbage), execute = type(os.execute),
        getenv = type(os.getenv), remove = type(os.remove), time = math.type(os.time()),
        clock = type(os.clock()),
        text = load("return x + 1", "chunk", "t", {x = 41})(),
        global = load("return string.upper('ok')")(),
        binary = select(2, load(string.dump(function() return 1 end))) or "loaded",
        gc = select(2, pcall(setmetatable, {}, {__gc = function() end})),
      }
    end)LUA");
  auto r = rt_->Call("sandbox", json::object());
  ASSERT_TRUE(r.ok()) << r.status().message();
  const json& o = r->front();
  for (const char* absent : {"io", "require", "loadfile", "dofile", "debug", "package",
                             "collectgarbage", "execute", "getenv", "remove"})
    EXPECT_EQ(o[absent], "nil") << absent;
  EXPECT_EQ(o["time"], "integer");
  EXPECT_EQ(o["clock"], "number");
  EXPECT_EQ(o["text"], 42);
  EXPECT_EQ(o["global"], "OK");
  EXPECT_NE(o["binary"].get<std::string>().find("binary chunk"), std::string::npos) << o;
  EXPECT_NE(o["gc"].get<std::string>().find("__gc"), std::string::npos) << o;
}

TEST_F(FunctionRuntimeTest, LoadErrorsSayWhereTheyAre) {
  auto syntax = rt_->Start(Spec("thermo", "function handle(e)\n  local x = \n  return x\nend\n"));
  ASSERT_FALSE(syntax.ok());
  EXPECT_EQ(syntax.status().code(), Code::kInvalidArgument);
  EXPECT_NE(syntax.status().message().find("syntax error: thermo.lua:3:"), std::string::npos)
      << syntax.status().message();

  auto top = rt_->Start(Spec("top", "local a = nil\nlocal b = a.x\n"));
  ASSERT_FALSE(top.ok());
  EXPECT_NE(top.status().message().find("running the script: top.lua:2:"), std::string::npos)
      << top.status().message();

  auto init = rt_->Start(Spec("init",
                              "function init() error('no config') end\n"
                              "function handle(e) end"));
  ASSERT_FALSE(init.ok());
  EXPECT_NE(init.status().message().find("init(): init.lua:1: no config"), std::string::npos)
      << init.status().message();

  auto none = rt_->Start(Spec("none", "function other(e) end"));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("defines no function handle"), std::string::npos);

  auto spin = Spec("spin", "while true do end");
  auto limited = rt_->Start(spin);
  ASSERT_FALSE(limited.ok());
  EXPECT_NE(limited.status().message().find("instruction limit exceeded"), std::string::npos);

  auto missing = Spec("missing", "");
  missing.artifact = (dir_ / "nope.lua").string();
  EXPECT_EQ(rt_->Start(missing).status().code(), Code::kNotFound);
  auto bad_handler = Spec("h", kEcho);
  bad_handler.handler = "os.exit";
  EXPECT_EQ(rt_->Start(bad_handler).status().code(), Code::kInvalidArgument);
  auto container = Spec("c", kEcho);
  container.kind = Kind::kContainer;
  EXPECT_EQ(rt_->Start(container).status().code(), Code::kInvalidArgument);

  // Errors in calls carry the line too.
  Load("runtime", "function handle(e)\n  return {v = e.missing.field}\nend\n");
  auto r = rt_->Call("runtime", json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("runtime.lua:2:"), std::string::npos) << r.status().message();
  auto thrown = Spec("thrown", "function handle(e) error({code = 1}) end");
  ASSERT_TRUE(rt_->Start(thrown).ok());
  auto t = rt_->Call("thrown", json::object());
  EXPECT_NE(t.status().message().find("error object of type table"), std::string::npos);
}

TEST_F(FunctionRuntimeTest, InitRunsOnceAndPrintGoesToTheLog) {
  auto spec = Spec("greet", R"LUA(
    inits = 0
    function init() inits = inits + 1 end
    function handle(e) print("hello", e.name, 1.5) return {inits = inits} end)LUA");
  auto h = rt_->Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().message();
  auto r = rt_->Call("greet", {{"name", "ada"}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->front()["inits"], 1);
  std::ifstream log(spec.dir + "/log/output.log");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_EQ(text.str(), "hello\tada\t1.5\n");
}

TEST_F(FunctionRuntimeTest, LifecycleFollowsTheRuntimeInterface) {
  Handle h = Load("life", kEcho);
  EXPECT_EQ(rt_->kind(), Kind::kFunction);
  EXPECT_TRUE(rt_->Available().ok());
  auto polled = rt_->Poll(h);
  ASSERT_TRUE(polled.ok());
  EXPECT_TRUE(polled->running);
  auto usage = rt_->GetUsage(h);
  ASSERT_TRUE(usage.ok());
  EXPECT_GT(usage->memory_bytes, 0u);
  EXPECT_EQ(usage->memory_limit_bytes, 8u << 20);
  EXPECT_EQ(rt_->Exec(h, {"true"}, std::chrono::seconds(1)).status().code(),
            Code::kFailedPrecondition);
  auto adopted = rt_->Adopt(h);
  ASSERT_TRUE(adopted.ok());
  EXPECT_FALSE(*adopted);

  auto missing = rt_->Call("nope", json::object());
  EXPECT_EQ(missing.status().code(), Code::kUnavailable);
  EXPECT_EQ(missing.status().message(), "function nope is not running on this node");

  // Starting the same id again replaces the script.
  ASSERT_TRUE(rt_->Start(Spec("life", "function handle(e) return {v = 2} end")).ok());
  EXPECT_EQ(rt_->Call("life", json::object())->front(), json({{"v", 2}}));
  // A new script that does not load leaves the old one running.
  EXPECT_FALSE(rt_->Start(Spec("life", "function handle(")).ok());
  EXPECT_EQ(rt_->Call("life", json::object())->front(), json({{"v", 2}}));

  ASSERT_TRUE(rt_->Stop(h, std::chrono::seconds(1)).ok());
  EXPECT_TRUE(rt_->Stop(h, std::chrono::seconds(1)).ok());
  polled = rt_->Poll(h);
  ASSERT_TRUE(polled.ok());
  EXPECT_FALSE(polled->running);
  ASSERT_TRUE(polled->exit.has_value());
  EXPECT_EQ(rt_->Call("life", json::object()).status().code(), Code::kUnavailable);
  EXPECT_EQ(rt_->GetUsage(h).status().code(), Code::kNotFound);
}

TEST_F(FunctionRuntimeTest, StoppingEndsACallInProgress) {
  auto spec = Spec("spin", R"LUA(function handle(e) print("started") while true do end end)LUA");
  spec.max_instructions = uint64_t{1} << 62;
  auto h = rt_->Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().message();
  Result<std::vector<json>> result = std::vector<json>{};
  std::thread caller([&] { result = rt_->Call("spin", json::object()); });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!fs::exists(spec.dir + "/log/output.log") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(fs::exists(spec.dir + "/log/output.log"));
  ASSERT_TRUE(rt_->Stop(*h, std::chrono::seconds(1)).ok());
  caller.join();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), Code::kUnavailable);
  EXPECT_EQ(result.status().message(), "function stopped");
}

TEST_F(FunctionRuntimeTest, ConcurrentCallsDoNotInterfere) {
  Load("double", R"LUA(
    function handle(e)
      local s = 0
      for i = 1, 50 do s = s + i end
      return {id = e.id, twice = e.id * 2, name = "n" .. e.id, s = s}
    end)LUA");
  constexpr int kThreads = 6;
  constexpr int kCalls = 300;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        int id = t * kCalls + i;
        auto r = rt_->Call("double", {{"id", id}});
        if (!r.ok() || r->size() != 1 || (*r)[0]["twice"] != id * 2 ||
            (*r)[0]["name"] != fmt::format("n{}", id) || (*r)[0]["s"] != 1275)
          ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  auto stats = rt_->Stats("double-0");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->calls, static_cast<uint64_t>(kThreads) * kCalls);
  EXPECT_EQ(stats->errors, 0u);
  EXPECT_GE(stats->states, 1u);
  EXPECT_LE(stats->states, FunctionRuntimeOptions{}.max_states_per_function);
  EXPECT_GT(stats->avg_call_us, 0);
}

TEST_F(FunctionRuntimeTest, OneStateSharesItsGlobalsAcrossAllCallers) {
  FunctionRuntimeOptions options;
  options.max_states_per_function = 1;
  rt_ = std::make_unique<FunctionRuntime>(options);
  Load("count", "n = 0\nfunction handle(e) n = n + 1 return {n = n} end");
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 250; ++i) ASSERT_TRUE(rt_->Call("count", json::object()).ok());
    });
  for (auto& th : threads) th.join();
  auto r = rt_->Call("count", json::object());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->front()["n"], 1001);
  EXPECT_EQ(rt_->Stats("count-0")->states, 1u);
}

}  // namespace
}  // namespace verge::node::runtime
