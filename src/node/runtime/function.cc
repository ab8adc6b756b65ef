#include "node/runtime/function.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <lua.hpp>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/fs.h"

// Lua reports errors with longjmp. Every function below that Lua may unwind (the C functions
// it calls, the hook, the allocator) keeps only trivially destructible locals across Lua API
// calls that can raise; C++ code that owns strings or JSON runs outside protected calls and
// uses only API functions that neither allocate nor raise (lua_next, lua_rawgeti, lua_type,
// lua_tolstring on strings...).

namespace verge::node::runtime {

namespace {

using nlohmann::json;

// The count hook runs every kHookEvery instructions (or max_instructions, if lower).
constexpr int kHookEvery = 1000;
constexpr size_t kMaxPrintLine = 4096;
constexpr size_t kMaxErrorMessage = 1024;
constexpr uint64_t kMaxFunctionMemoryMb = 4096;

// Its address is the registry key of the metatable that marks tables made from JSON arrays.
const char kArrayMetatableKey = 0;

enum class Stage { kOpen, kCompile, kRun, kInit, kHandler };

// What every state of one function is loaded from.
struct LoadSpec {
  std::string app;
  std::string script;
  std::string chunk_name;  // "=APP.lua": error messages read "APP.lua:3: ..."
  std::string handler;
  uint64_t max_instructions = 0;
  size_t memory_limit = 0;  // bytes
  std::string log_path;     // print(); "" discards
};

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

bool ValidIdentifier(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  if (std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// One Lua state of a function: its sandbox, its limits and the context its C callbacks find
// through the state's extra space. Used by one thread at a time (the pool hands it out).
class LuaState {
 public:
  static Result<std::unique_ptr<LuaState>> Load(const LoadSpec& spec,
                                                const std::atomic<bool>* stopping);
  ~LuaState();
  LuaState(const LuaState&) = delete;
  LuaState& operator=(const LuaState&) = delete;

  Result<std::vector<json>> Call(const json& event);
  // After a memory error that a garbage collection did not undo: close it, load a fresh one.
  bool needs_reload() const { return needs_reload_; }
  size_t memory() const { return published_memory_.load(std::memory_order_relaxed); }

  // The C callbacks (allocator, hook, print) reach these.
  static LuaState* Self(lua_State* L) { return *static_cast<LuaState**>(lua_getextraspace(L)); }
  static void* Alloc(void* ud, void* ptr, size_t osize, size_t nsize);
  static void Hook(lua_State* L, lua_Debug* ar);
  static int Print(lua_State* L);

 private:
  LuaState(const LoadSpec& spec, const std::atomic<bool>* stopping)
      : limit_(spec.memory_limit),
        max_instructions_(spec.max_instructions),
        hook_every_(static_cast<int>(std::min<uint64_t>(kHookEvery, spec.max_instructions))),
        log_path_(spec.log_path),
        stopping_(stopping) {}

  // Resets the per-call limits before a call.
  void Arm();
  // The error of a failed protected call, its object at the top of the stack.
  Status Failure(int rc);
  void Publish() { published_memory_.store(used_, std::memory_order_relaxed); }

  lua_State* L_ = nullptr;
  int handler_ref_ = LUA_NOREF;
  bool needs_reload_ = false;

  // Memory (the allocator).
  size_t used_ = 0;
  const size_t limit_;
  bool memory_limit_hit_ = false;
  std::atomic<size_t> published_memory_{0};
  // Instructions (the hook).
  uint64_t instructions_ = 0;
  const uint64_t max_instructions_;
  const int hook_every_;
  bool instruction_limit_hit_ = false;
  bool aborted_ = false;  // the function is being stopped, or the state closed
  bool closing_ = false;

  const std::string log_path_;
  const std::atomic<bool>* const stopping_;
};

void* LuaState::Alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* s = static_cast<LuaState*>(ud);
  const size_t old = ptr ? osize : 0;  // without a block, osize is the kind of object
  if (nsize == 0) {
    std::free(ptr);  // NOLINT(cppcoreguidelines-no-malloc)
    s->used_ -= old;
    return nullptr;
  }
  if (nsize > old && s->used_ - old + nsize > s->limit_) {
    // Lua collects garbage and asks once more; if that fails too it raises a memory error.
    s->memory_limit_hit_ = true;
    return nullptr;
  }
  void* p = std::realloc(ptr, nsize);  // NOLINT(cppcoreguidelines-no-malloc)
  if (!p) {
    if (nsize > old) return nullptr;
    p = ptr;  // Lua assumes shrinking never fails: keep the block, count it at its new size
  }
  s->used_ = s->used_ - old + nsize;
  return p;
}

void LuaState::Hook(lua_State* L, lua_Debug* /*ar*/) {
  LuaState* s = Self(L);
  const int every = lua_gethookcount(L);
  s->instructions_ += static_cast<uint64_t>(every);
  const bool stop = s->closing_ || (s->stopping_ && s->stopping_->load(std::memory_order_relaxed));
  if (stop || s->instructions_ > s->max_instructions_) {
    if (stop) {
      s->aborted_ = true;
    } else {
      s->instruction_limit_hit_ = true;
    }
    // From now on every instruction raises again, so a pcall in the script cannot swallow it.
    lua_sethook(L, &LuaState::Hook, LUA_MASKCOUNT, 1);
    lua_pushstring(L, stop ? "function stopped" : "instruction limit exceeded");
    lua_error(L);
  }
  if (every != s->hook_every_) lua_sethook(L, &LuaState::Hook, LUA_MASKCOUNT, s->hook_every_);
}

int LuaState::Print(lua_State* L) {
  LuaState* s = Self(L);
  const int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; ++i) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, nullptr);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  size_t len = 0;
  const char* line = lua_tolstring(L, -1, &len);
  if (s->log_path_.empty()) return 0;
  // Opened per line, so that a rotation of the log (rename, truncate) is followed.
  int fd = ::open(s->log_path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return 0;
  len = std::min(len, kMaxPrintLine);
  ssize_t w1 = ::write(fd, line, len);
  ssize_t w2 = ::write(fd, "\n", 1);
  (void)w1;
  (void)w2;
  ::close(fd);
  return 0;
}

// load(chunk [, name [, mode [, env]]]) that accepts text chunks only: no bytecode, which the
// Lua VM does not verify.
int SafeLoad(lua_State* L) {
  const bool has_env = lua_gettop(L) >= 4;
  lua_settop(L, 4);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushliteral(L, "t");
  if (has_env) lua_pushvalue(L, 4);
  lua_call(L, has_env ? 4 : 3, LUA_MULTRET);
  return lua_gettop(L) - 4;
}

// setmetatable without finalizers: a __gc would run Lua code outside any call and its limits.
int SafeSetmetatable(lua_State* L) {
  lua_settop(L, 2);
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL) return luaL_error(L, "__gc metamethods are not allowed");
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 2, 1);
  return 1;
}

void OpenSandbox(lua_State* L) {
  static const luaL_Reg kLibs[] = {
      {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
      {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
      {LUA_UTF8LIBNAME, luaopen_utf8}, {LUA_COLIBNAME, luaopen_coroutine},
  };
  for (const luaL_Reg& lib : kLibs) {
    luaL_requiref(L, lib.name, lib.func, 1);
    lua_pop(L, 1);
  }
  lua_pushglobaltable(L);
  for (const char* name : {"dofile", "loadfile", "collectgarbage"}) {
    lua_pushnil(L);
    lua_setfield(L, -2, name);
  }
  lua_getfield(L, -1, "load");
  lua_pushcclosure(L, SafeLoad, 1);
  lua_setfield(L, -2, "load");
  lua_getfield(L, -1, "setmetatable");
  lua_pushcclosure(L, SafeSetmetatable, 1);
  lua_setfield(L, -2, "setmetatable");
  lua_pushcfunction(L, &LuaState::Print);
  lua_setfield(L, -2, "print");
  // os: the clock only.
  lua_pushcfunction(L, luaopen_os);
  lua_call(L, 0, 1);
  lua_createtable(L, 0, 2);
  for (const char* name : {"time", "clock"}) {
    lua_getfield(L, -2, name);
    lua_setfield(L, -2, name);
  }
  lua_setfield(L, -3, "os");
  lua_pop(L, 2);
  // The marker of JSON arrays.
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__name");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &kArrayMetatableKey);
}

struct SetupArgs {
  const LoadSpec* spec;
  Stage stage;
  int handler_ref;
};

int Setup(lua_State* L) {
  auto* a = static_cast<SetupArgs*>(lua_touserdata(L, 1));
  OpenSandbox(L);
  a->stage = Stage::kCompile;
  const std::string& script = a->spec->script;
  if (luaL_loadbufferx(L, script.data(), script.size(), a->spec->chunk_name.c_str(), "t") != LUA_OK)
    return lua_error(L);
  a->stage = Stage::kRun;
  lua_call(L, 0, 0);
  a->stage = Stage::kInit;
  if (lua_getglobal(L, "init") == LUA_TFUNCTION) {
    lua_call(L, 0, 0);
  } else {
    lua_pop(L, 1);
  }
  a->stage = Stage::kHandler;
  if (lua_getglobal(L, a->spec->handler.c_str()) != LUA_TFUNCTION)
    return luaL_error(L, "the script defines no function %s", a->spec->handler.c_str());
  a->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

// JSON → Lua, inside a protected call (it allocates).
void PushJson(lua_State* L, const json& j, int depth) {
  if (depth > FunctionRuntime::kMaxDepth)
    luaL_error(L, "the event is nested deeper than %d levels", FunctionRuntime::kMaxDepth);
  luaL_checkstack(L, 4, "the event is nested too deeply");
  switch (j.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      lua_pushnil(L);
      return;
    case json::value_t::boolean:
      lua_pushboolean(L, j.get<bool>() ? 1 : 0);
      return;
    case json::value_t::number_integer:
      lua_pushinteger(L, j.get<int64_t>());
      return;
    case json::value_t::number_unsigned: {
      const auto u = j.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        lua_pushinteger(L, static_cast<lua_Integer>(u));
      } else {
        lua_pushnumber(L, static_cast<lua_Number>(u));
      }
      return;
    }
    case json::value_t::number_float:
      lua_pushnumber(L, j.get<double>());
      return;
    case json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      lua_pushlstring(L, s.data(), s.size());
      return;
    }
    case json::value_t::array: {
      lua_createtable(L, static_cast<int>(std::min<size_t>(j.size(), 1 << 20)), 0);
      lua_Integer i = 1;
      for (const auto& e : j) {
        PushJson(L, e, depth + 1);
        lua_rawseti(L, -2, i++);
      }
      lua_rawgetp(L, LUA_REGISTRYINDEX, &kArrayMetatableKey);
      lua_setmetatable(L, -2);
      return;
    }
    case json::value_t::object: {
      lua_createtable(L, 0, static_cast<int>(std::min<size_t>(j.size(), 1 << 20)));
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (it->is_null()) continue;
        const std::string& key = it.key();
        lua_pushlstring(L, key.data(), key.size());
        PushJson(L, *it, depth + 1);
        lua_rawset(L, -3);
      }
      return;
    }
    case json::value_t::binary:
      luaL_error(L, "the event holds binary data, which Lua functions do not take");
      return;
  }
}

struct CallArgs {
  const json* event;
  int handler_ref;
};

int CallTrampoline(lua_State* L) {
  auto* a = static_cast<CallArgs*>(lua_touserdata(L, 1));
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->handler_ref);
  PushJson(L, *a->event, 0);
  lua_call(L, 1, 1);
  return 1;
}

// Lua → JSON, outside protected mode: only API functions that neither allocate nor raise.
class ToJson {
 public:
  explicit ToJson(lua_State* L) : L_(L) {}

  // The value at absolute index `idx`. On failure, error() says what and where.
  bool Convert(int idx, int depth, json& out) {
    switch (lua_type(L_, idx)) {
      case LUA_TNIL:
        out = nullptr;
        return true;
      case LUA_TBOOLEAN:
        out = lua_toboolean(L_, idx) != 0;
        return true;
      case LUA_TNUMBER:
        if (lua_isinteger(L_, idx)) {
          out = static_cast<int64_t>(lua_tointegerx(L_, idx, nullptr));
        } else {
          double d = lua_tonumberx(L_, idx, nullptr);
          if (std::isfinite(d)) {
            out = d;
          } else {
            out = nullptr;  // JSON has no NaN or infinity
          }
        }
        return true;
      case LUA_TSTRING: {
        size_t n = 0;
        const char* p = lua_tolstring(L_, idx, &n);
        std::string_view s(p, n);
        if (!ValidUtf8(s)) return Fail("a string that is not valid UTF-8");
        out = std::string(s);
        return true;
      }
      case LUA_TTABLE:
        return Table(idx, depth, out);
      default:
        return Fail(
            fmt::format("a {}, which has no JSON form", lua_typename(L_, lua_type(L_, idx))));
    }
  }

  const std::string& error() const { return error_; }
  std::string where() const { return where_.empty() ? "the result" : "the result at " + where_; }

 private:
  bool Fail(std::string message) {
    error_ = std::move(message);
    return false;
  }

  bool Table(int idx, int depth, json& out) {
    if (depth >= FunctionRuntime::kMaxDepth)
      return Fail(fmt::format("tables nested deeper than {} levels", FunctionRuntime::kMaxDepth));
    const void* self = lua_topointer(L_, idx);
    if (std::find(path_.begin(), path_.end(), self) != path_.end())
      return Fail("a table that contains itself (a cycle)");
    if (!lua_checkstack(L_, 4)) return Fail("tables nested too deeply");
    path_.push_back(self);
    bool ok = IsArray(idx) ? Array(idx, depth, out) : Object(idx, depth, out);
    path_.pop_back();
    return ok;
  }

  // A sequence 1..n, or a table made from a JSON array (which may have holes: nulls).
  bool IsArray(int idx) {
    bool marked = false;
    if (lua_getmetatable(L_, idx)) {
      lua_rawgetp(L_, LUA_REGISTRYINDEX, &kArrayMetatableKey);
      marked = lua_rawequal(L_, -1, -2) != 0;
      lua_pop(L_, 2);
    }
    lua_Integer count = 0;
    lua_Integer max = 0;
    lua_pushnil(L_);
    while (lua_next(L_, idx)) {
      lua_Integer k = 0;
      if (!lua_isinteger(L_, -2) || (k = lua_tointegerx(L_, -2, nullptr)) < 1) {
        lua_pop(L_, 2);
        return false;
      }
      ++count;
      max = std::max(max, k);
      lua_pop(L_, 1);
    }
    if (count == 0) return marked;
    array_length_ = max;
    // Holes only where JSON nulls were, and not so many that a stray key makes a huge array.
    return max == count || (marked && max <= 2 * count);
  }

  bool Array(int idx, int depth, json& out) {
    const lua_Integer n = array_length_;
    out = json::array();
    for (lua_Integer i = 1; i <= n; ++i) {
      lua_rawgeti(L_, idx, i);
      json v;
      bool ok = Convert(lua_gettop(L_), depth + 1, v);
      lua_pop(L_, 1);
      if (!ok) {
        where_ = fmt::format("[{}]{}", i, where_);
        return false;
      }
      out.push_back(std::move(v));
    }
    array_length_ = 0;
    return true;
  }

  bool Object(int idx, int depth, json& out) {
    out = json::object();
    lua_pushnil(L_);
    while (lua_next(L_, idx)) {
      std::string key;
      switch (lua_type(L_, -2)) {
        case LUA_TSTRING: {
          size_t n = 0;
          const char* p = lua_tolstring(L_, -2, &n);
          key.assign(p, n);
          if (!ValidUtf8(key)) return Fail("a key that is not valid UTF-8");
          break;
        }
        case LUA_TNUMBER:
          key = lua_isinteger(L_, -2) ? std::to_string(lua_tointegerx(L_, -2, nullptr))
                                      : fmt::format("{}", lua_tonumberx(L_, -2, nullptr));
          break;
        default:
          return Fail(fmt::format("a key that is a {} (keys are strings or numbers)",
                                  lua_typename(L_, lua_type(L_, -2))));
      }
      json v;
      if (!Convert(lua_gettop(L_), depth + 1, v)) {
        where_ = "." + key + where_;
        return false;
      }
      out[key] = std::move(v);
      lua_pop(L_, 1);
    }
    return true;
  }

  lua_State* L_;
  std::vector<const void*> path_;
  lua_Integer array_length_ = 0;
  std::string error_;
  std::string where_;
};

std::string ErrorObject(lua_State* L, int idx) {
  std::string msg;
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n = 0;
      const char* p = lua_tolstring(L, idx, &n);
      msg.assign(p, std::min(n, kMaxErrorMessage));
      break;
    }
    case LUA_TNUMBER:
      msg = fmt::format("{}", lua_tonumberx(L, idx, nullptr));
      break;
    default:
      msg = fmt::format("(an error object of type {})", lua_typename(L, lua_type(L, idx)));
  }
  return msg;
}

int Panic(lua_State* L) {
  // Every call into Lua that can raise is protected; reaching this is a bug.
  spdlog::critical("Lua panic outside a protected call: {}", ErrorObject(L, -1));
  return 0;  // Lua aborts
}

}  // namespace

Result<std::unique_ptr<LuaState>> LuaState::Load(const LoadSpec& spec,
                                                 const std::atomic<bool>* stopping) {
  std::unique_ptr<LuaState> s(new LuaState(spec, stopping));
  s->L_ = lua_newstate(&LuaState::Alloc, s.get());
  if (!s->L_)
    return Error(Code::kResourceExhausted, "memory limit exceeded: {} MB is too little for Lua",
                 spec.memory_limit >> 20);
  *static_cast<LuaState**>(lua_getextraspace(s->L_)) = s.get();
  lua_atpanic(s->L_, Panic);
  s->Arm();
  SetupArgs args{&spec, Stage::kOpen, LUA_NOREF};
  lua_pushcfunction(s->L_, Setup);
  lua_pushlightuserdata(s->L_, &args);
  const int rc = lua_pcall(s->L_, 1, 0, 0);
  Status failure = rc == LUA_OK ? Status::Ok() : s->Failure(rc);
  lua_settop(s->L_, 0);
  s->Publish();
  if (!failure.ok()) {
    switch (args.stage) {
      case Stage::kOpen:
        return failure.Wrap("opening the Lua libraries");
      case Stage::kCompile:
        return Error(Code::kInvalidArgument, "syntax error: {}", failure.message());
      case Stage::kRun:
        return failure.Wrap("running the script");
      case Stage::kInit:
        return failure.Wrap("init()");
      case Stage::kHandler:
        return failure;
    }
  }
  s->handler_ref_ = args.handler_ref;
  return s;
}

LuaState::~LuaState() {
  if (!L_) return;
  // Nothing should run Lua code now; if anything does, it ends at its first instruction.
  closing_ = true;
  lua_sethook(L_, &LuaState::Hook, LUA_MASKCOUNT, 1);
  lua_close(L_);
}

void LuaState::Arm() {
  instructions_ = 0;
  instruction_limit_hit_ = false;
  memory_limit_hit_ = false;
  aborted_ = false;
  lua_sethook(L_, &LuaState::Hook, LUA_MASKCOUNT, hook_every_);
}

Status LuaState::Failure(int rc) {
  std::string msg = ErrorObject(L_, -1);
  if (instruction_limit_hit_)
    return Error(Code::kResourceExhausted,
                 "instruction limit exceeded: the call ran more than {} Lua instructions",
                 max_instructions_);
  if (aborted_) return Error(Code::kUnavailable, "function stopped");
  // A memory error a pcall in the script caught and raised again arrives as a runtime error.
  if (rc == LUA_ERRMEM || (memory_limit_hit_ && msg.find("not enough memory") != std::string::npos))
    return Error(Code::kResourceExhausted,
                 "memory limit exceeded: the function needs more than {} MB of Lua memory",
                 limit_ >> 20);
  return Status(Code::kInvalidArgument, std::move(msg));
}

Result<std::vector<json>> LuaState::Call(const json& event) {
  Arm();
  CallArgs args{&event, handler_ref_};
  lua_pushcfunction(L_, CallTrampoline);
  lua_pushlightuserdata(L_, &args);
  const int rc = lua_pcall(L_, 1, 1, 0);
  Result<std::vector<json>> result = std::vector<json>{};
  if (rc != LUA_OK || instruction_limit_hit_ || aborted_) {
    result = Failure(rc);
  } else if (int t = lua_type(L_, -1); t != LUA_TNIL) {
    json v;
    ToJson conv(L_);
    if (t != LUA_TTABLE) {
      result = Error(Code::kInvalidArgument,
                     "the handler must return a table, an array of tables or nil, not a {}",
                     lua_typename(L_, t));
    } else if (!conv.Convert(lua_gettop(L_), 0, v)) {
      result =
          Error(Code::kInvalidArgument, "{} cannot become JSON: {}", conv.where(), conv.error());
    } else if (v.is_object()) {
      if (!v.empty()) result.value().push_back(std::move(v));
    } else {
      std::vector<json> rows;
      rows.reserve(v.size());
      for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_object()) {
          result = Error(Code::kInvalidArgument,
                         "element {} of the returned array is not a table of fields", i + 1);
          break;
        }
        rows.push_back(std::move(v[i]));
      }
      if (result.ok()) result = std::move(rows);
    }
  }
  lua_settop(L_, 0);
  if (memory_limit_hit_ && !result.ok()) {
    lua_gc(L_, LUA_GCCOLLECT);
    // What remains is held by the script's globals: start over rather than fail every call.
    needs_reload_ = used_ > limit_ / 2;
  }
  Publish();
  return result;
}

// One loaded function: its load spec and a pool of Lua states.
class FunctionRuntime::Function {
 public:
  Function(std::string id, LoadSpec spec, size_t max_states)
      : id_(std::move(id)), spec_(std::move(spec)), max_states_(max_states) {}

  const std::string& id() const { return id_; }
  const std::string& app() const { return spec_.app; }
  uint64_t memory_limit() const { return spec_.memory_limit; }

  // The first state: the script's errors surface at Start.
  Status Load() {
    VERGE_ASSIGN_OR_RETURN(auto state, LuaState::Load(spec_, &stopping_));
    std::lock_guard lock(mu_);
    idle_.push_back(state.get());
    states_.push_back(std::move(state));
    return Status::Ok();
  }

  Result<std::vector<json>> Call(const json& event) {
    const auto start = std::chrono::steady_clock::now();
    Result<LuaState*> state = Acquire();
    Result<std::vector<json>> result = std::vector<json>{};
    if (state.ok()) {
      result = (*state)->Call(event);
      Release(*state);
    } else {
      result = state.status();
    }
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    calls_.fetch_add(1, std::memory_order_relaxed);
    total_ns_.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
    if (!result.ok()) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard lock(error_mu_);
      last_error_ = result.status().message();
    }
    return result;
  }

  void Stop() {
    stopping_.store(true);
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }

  // Why it can no longer run ("" while it can).
  std::string failure() const {
    std::lock_guard lock(mu_);
    return failed_;
  }

  FunctionStats Stats() const {
    FunctionStats s;
    s.id = id_;
    s.app = spec_.app;
    s.calls = calls_.load(std::memory_order_relaxed);
    s.errors = errors_.load(std::memory_order_relaxed);
    s.total_call_ns = total_ns_.load(std::memory_order_relaxed);
    s.avg_call_us =
        s.calls ? static_cast<double>(s.total_call_ns) / 1000.0 / static_cast<double>(s.calls) : 0;
    {
      std::lock_guard lock(error_mu_);
      s.last_error = last_error_;
    }
    std::lock_guard lock(mu_);
    s.states = states_.size();
    for (const auto& st : states_) s.memory_bytes += st->memory();
    return s;
  }

 private:
  Result<LuaState*> Acquire() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (stopping_.load()) return Error(Code::kUnavailable, "function {} stopped", spec_.app);
      if (!idle_.empty()) {
        LuaState* s = idle_.back();
        idle_.pop_back();
        return s;
      }
      if (states_.size() + loading_ < max_states_) {
        ++loading_;
        lock.unlock();
        auto loaded = LuaState::Load(spec_, &stopping_);
        lock.lock();
        --loading_;
        if (!loaded.ok()) {
          if (states_.empty() && loading_ == 0) failed_ = loaded.status().message();
          cv_.notify_all();
          return Error(Code::kUnavailable, "function {} could not be loaded again: {}", spec_.app,
                       loaded.status().message());
        }
        failed_.clear();
        states_.push_back(std::move(loaded).value());
        return states_.back().get();
      }
      cv_.wait(lock);
    }
  }

  void Release(LuaState* s) {
    std::unique_ptr<LuaState> closed;
    std::lock_guard lock(mu_);
    if (s->needs_reload()) {
      auto it =
          std::find_if(states_.begin(), states_.end(), [&](const auto& p) { return p.get() == s; });
      closed = std::move(*it);
      states_.erase(it);
    } else {
      idle_.push_back(s);
    }
    cv_.notify_one();
    // `closed` is destroyed after the lock is released (declared before it).
  }

  const std::string id_;
  const LoadSpec spec_;
  const size_t max_states_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<LuaState>> states_;  // GUARDED_BY(mu_)
  std::vector<LuaState*> idle_;                    // GUARDED_BY(mu_)
  size_t loading_ = 0;                             // GUARDED_BY(mu_)
  std::string failed_;                             // GUARDED_BY(mu_)

  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> total_ns_{0};
  mutable std::mutex error_mu_;
  std::string last_error_;  // GUARDED_BY(error_mu_)
};

FunctionRuntime::FunctionRuntime(FunctionRuntimeOptions options) : options_(options) {}

FunctionRuntime::~FunctionRuntime() {
  std::unique_lock lock(mu_);
  for (auto& [id, fn] : by_id_) fn->Stop();
}

Result<Handle> FunctionRuntime::Start(const WorkloadSpec& spec) {
  if (spec.kind != Kind::kFunction)
    return Error(Code::kInvalidArgument, "{}: not a function", spec.id);
  if (spec.id.empty()) return Error(Code::kInvalidArgument, "a function needs an id");
  if (!ValidIdentifier(spec.handler))
    return Error(Code::kInvalidArgument, "{}: handler \"{}\" is not a Lua name", spec.id,
                 spec.handler);
  if (spec.max_instructions == 0)
    return Error(Code::kInvalidArgument, "{}: the instruction limit must be at least 1", spec.id);
  if (spec.function_memory_mb == 0 || spec.function_memory_mb > kMaxFunctionMemoryMb)
    return Error(Code::kInvalidArgument, "{}: the memory limit must be 1 to {} MB", spec.id,
                 kMaxFunctionMemoryMb);
  if (spec.artifact.empty()) return Error(Code::kInvalidArgument, "{}: no script", spec.id);
  std::error_code ec;
  const auto size = std::filesystem::file_size(spec.artifact, ec);
  if (ec) return Error(Code::kNotFound, "{}: script {}: {}", spec.id, spec.artifact, ec.message());
  if (size > options_.max_script_bytes)
    return Error(Code::kInvalidArgument, "{}: the script is {} bytes, more than the {} allowed",
                 spec.id, size, options_.max_script_bytes);
  VERGE_ASSIGN_OR_RETURN(std::string script, ReadFile(spec.artifact));

  LoadSpec load;
  load.app = spec.app.empty() ? spec.id : spec.app;
  load.script = std::move(script);
  load.chunk_name = "=" + load.app + ".lua";
  load.handler = spec.handler;
  load.max_instructions = spec.max_instructions;
  load.memory_limit = static_cast<size_t>(spec.function_memory_mb) << 20;
  if (!spec.dir.empty()) {
    VERGE_RETURN_IF_ERROR(MakeDirs(spec.dir + "/log"));
    load.log_path = spec.dir + "/log/output.log";
  }
  auto fn = std::make_shared<Function>(spec.id, std::move(load),
                                       std::max<size_t>(1, options_.max_states_per_function));
  if (Status st = fn->Load(); !st.ok()) return st.Wrap(spec.id);

  std::shared_ptr<Function> old;
  {
    std::unique_lock lock(mu_);
    auto& slot = by_id_[spec.id];
    old = std::move(slot);
    slot = fn;
    by_app_.clear();
    for (const auto& [id, f] : by_id_) by_app_[f->app()].push_back(f);
  }
  if (old) old->Stop();
  Handle h;
  h.id = spec.id;
  h.kind = Kind::kFunction;
  h.dir = spec.dir;
  return h;
}

Status FunctionRuntime::Stop(const Handle& h, std::chrono::milliseconds /*grace*/) {
  std::shared_ptr<Function> fn;
  {
    std::unique_lock lock(mu_);
    auto it = by_id_.find(h.id);
    if (it == by_id_.end()) return Status::Ok();
    fn = std::move(it->second);
    by_id_.erase(it);
    by_app_.clear();
    for (const auto& [id, f] : by_id_) by_app_[f->app()].push_back(f);
  }
  fn->Stop();  // calls in progress end at their next hook; they hold `fn` until then
  return Status::Ok();
}

Result<Observed> FunctionRuntime::Poll(const Handle& h) {
  std::shared_ptr<Function> fn;
  {
    std::shared_lock lock(mu_);
    if (auto it = by_id_.find(h.id); it != by_id_.end()) fn = it->second;
  }
  Observed o;
  if (!fn) {
    o.exit = ExitInfo{-1, 0, false, "not loaded (the node agent restarted, or it was stopped)"};
    return o;
  }
  if (std::string why = fn->failure(); !why.empty()) {
    o.exit = ExitInfo{-1, 0, false, "could not be loaded again: " + why};
    return o;
  }
  o.running = true;
  return o;
}

Result<bool> FunctionRuntime::Adopt(const Handle& /*h*/) { return false; }

Result<Usage> FunctionRuntime::GetUsage(const Handle& h) {
  VERGE_ASSIGN_OR_RETURN(FunctionStats s, Stats(h.id));
  std::shared_lock lock(mu_);
  Usage u;
  u.cpu_usage_ns = s.total_call_ns;
  u.memory_bytes = s.memory_bytes;
  if (auto it = by_id_.find(h.id); it != by_id_.end())
    u.memory_limit_bytes = it->second->memory_limit() * std::max<size_t>(1, s.states);
  return u;
}

Result<int> FunctionRuntime::Exec(const Handle& /*h*/, const std::vector<std::string>& /*argv*/,
                                  std::chrono::milliseconds /*timeout*/) {
  return Error(Code::kFailedPrecondition, "functions have no exec probe");
}

std::shared_ptr<FunctionRuntime::Function> FunctionRuntime::FindApp(const std::string& app) {
  std::shared_lock lock(mu_);
  auto it = by_app_.find(app);
  if (it == by_app_.end() || it->second.empty()) return nullptr;
  const auto& fns = it->second;
  if (fns.size() == 1) return fns.front();
  return fns[turn_.fetch_add(1, std::memory_order_relaxed) % fns.size()];
}

Result<std::vector<json>> FunctionRuntime::Call(const std::string& app, const json& event) {
  std::shared_ptr<Function> fn = FindApp(app);
  if (!fn) return Error(Code::kUnavailable, "function {} is not running on this node", app);
  return fn->Call(event);
}

Result<FunctionStats> FunctionRuntime::Stats(const std::string& id) const {
  std::shared_ptr<Function> fn;
  {
    std::shared_lock lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return Error(Code::kNotFound, "function {} is not loaded", id);
    fn = it->second;
  }
  return fn->Stats();
}

std::vector<FunctionStats> FunctionRuntime::AllStats() const {
  std::vector<std::shared_ptr<Function>> fns;
  {
    std::shared_lock lock(mu_);
    for (const auto& [id, fn] : by_id_) fns.push_back(fn);
  }
  std::vector<FunctionStats> out;
  out.reserve(fns.size());
  for (const auto& fn : fns) out.push_back(fn->Stats());
  return out;
}

}  // namespace verge::node::runtime
