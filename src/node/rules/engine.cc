#include "node/rules/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "node/rules/eval.h"
#include "node/rules/functions.h"
#include "node/rules/json_value.h"

namespace verge::rules {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::min();
// Timestamps beyond ±2^53 ms (±285,000 years) are refused, so that window arithmetic never
// overflows.
constexpr int64_t kMaxTime = int64_t{1} << 53;

// An event as a window holds it.
struct Stored {
  Value row;
  int64_t ts = 0;
  std::vector<Value> analytic;  // by analytic slot
  bool pass = true;             // WHERE held
};

// The state of one analytic call for one partition; what zscore and ewma_score read on every
// event first.
struct AnalyticState {
  Value last;  // the latest result (what an event failing WHEN gets)
  // zscore: the previous values (at most n); once full, the oldest is at ring_next. Snapshots
  // write them as `history`, oldest first.
  std::vector<double> ring;
  size_t ring_next = 0;
  int64_t count = 0;  // ewma_score, acc_*
  double mean = 0;    // ewma_score
  double var = 0;
  bool any_float = false;  // acc_*
  int64_t isum = 0;
  double fsum = 0;
  Value min;
  Value max;
  std::vector<Value> prev;  // changed_col, had_changed: previous value per argument
  std::vector<bool> has_prev;
  // lag: previous values. Made on first use: an empty std::deque already holds 600 bytes.
  std::unique_ptr<std::deque<Value>> history;
};

// A copy of a key that shares no string with the event it came from. Keys of long-lived tables
// (groups of an open window, analytic partitions) are compared on every event: their bytes
// then sit beside the table's other keys, not scattered among old events.
Value DetachedKey(const Value& v) {
  if (v.is_string()) return Value::String(v.string_value());
  if (v.is_array()) {
    Array a;
    a.reserve(v.array_value().size());
    for (const Value& e : v.array_value()) a.push_back(DetachedKey(e));
    return Value::MakeArray(std::move(a));
  }
  return v;
}

// Keys (of groups, of partitions) to numbers, with the keys' equality of GROUP BY (Equals).
// String keys, the usual ones (device ids), sit in a table of their own as std::string: a
// lookup then compares bytes held by the table, not behind each key's shared pointer. A string
// never equals another type, so the two tables never disagree.
class KeyIndex {
 public:
  std::optional<size_t> Find(const Value& key) const {
    if (key.is_string()) {
      auto it = strings_.find(key.string_value());
      if (it == strings_.end()) return std::nullopt;
      return it->second;
    }
    auto it = others_.find(key);
    if (it == others_.end()) return std::nullopt;
    return it->second;
  }
  // Adds `key` with number `n`; false (and nothing added) when it is there.
  bool Add(const Value& key, size_t n) {
    if (key.is_string()) return strings_.emplace(key.string_value(), n).second;
    if (others_.find(key) != others_.end()) return false;
    others_.emplace(DetachedKey(key), n);
    return true;
  }
  // f(key, n) for every key, in no particular order.
  template <typename F>
  void ForEach(F&& f) const {
    for (const auto& [key, n] : strings_) f(Value::String(key), n);
    for (const auto& [key, n] : others_) f(key, n);
  }

 private:
  std::unordered_map<std::string, size_t> strings_;
  std::unordered_map<Value, size_t, ValueHash, ValueEq> others_;
};

// The analytic states of one call by partition key.
struct Partitions {
  KeyIndex index;  // key -> states[n]
  std::deque<AnalyticState> states;
};

// zscore's ring, oldest first.
template <typename F>
void ForEachOldestFirst(const AnalyticState& s, size_t n, F&& f) {
  const size_t size = s.ring.size();
  const size_t first = size < n ? 0 : s.ring_next;
  for (size_t i = first; i < size; ++i) f(s.ring[i]);
  for (size_t i = 0; i < first; ++i) f(s.ring[i]);
}

// Whether an expression gives the same value every time it sees the same event and state
// (no rand() or newuuid()).
bool Deterministic(const Expr& e) {
  if (e.kind == ExprKind::kCall && (e.name == "rand" || e.name == "newuuid")) return false;
  bool det = true;
  ForEachChild(e, [&](const Expr& c) { det = det && Deterministic(c); });
  return det;
}

// The analytic functions, by name.
enum class AnalyticKind : uint8_t {
  kLag,
  kLatest,
  kChangedCol,
  kHadChanged,
  kAccSum,
  kAccAvg,
  kAccMin,
  kAccMax,
  kAccCount,
  kZscore,
  kEwmaScore,
  kOther
};
AnalyticKind AnalyticKindOf(std::string_view f) {
  static constexpr std::pair<std::string_view, AnalyticKind> kNames[] = {
      {"lag", AnalyticKind::kLag},
      {"latest", AnalyticKind::kLatest},
      {"changed_col", AnalyticKind::kChangedCol},
      {"had_changed", AnalyticKind::kHadChanged},
      {"acc_sum", AnalyticKind::kAccSum},
      {"acc_avg", AnalyticKind::kAccAvg},
      {"acc_min", AnalyticKind::kAccMin},
      {"acc_max", AnalyticKind::kAccMax},
      {"acc_count", AnalyticKind::kAccCount},
      {"zscore", AnalyticKind::kZscore},
      {"ewma_score", AnalyticKind::kEwmaScore}};
  for (const auto& [name, kind] : kNames) {
    if (f == name) return kind;
  }
  return AnalyticKind::kOther;
}
bool IsAcc(AnalyticKind k) {
  return k == AnalyticKind::kAccSum || k == AnalyticKind::kAccAvg || k == AnalyticKind::kAccMin ||
         k == AnalyticKind::kAccMax || k == AnalyticKind::kAccCount;
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

std::string DefaultName(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kColumn:
    case ExprKind::kField:
    case ExprKind::kCall:
      return e.name;
    default:
      return {};
  }
}

bool Truthy(const Value& v) { return v.is_bool() && v.bool_value(); }

// Sum of numbers: a bigint while every addend is one, a float otherwise.
struct Summer {
  bool any = false;
  bool any_float = false;
  int64_t isum = 0;
  double fsum = 0;
  void Add(const Value& v) {
    any = true;
    if (v.is_int() && !any_float) {
      isum =
          static_cast<int64_t>(static_cast<uint64_t>(isum) + static_cast<uint64_t>(v.int_value()));
      fsum += static_cast<double>(v.int_value());
    } else {
      if (!any_float) fsum = static_cast<double>(isum);
      any_float = true;
      fsum += v.number_value();
    }
  }
  Value Get() const {
    if (!any) return Value::Null();
    return any_float ? Value::Float(fsum) : Value::Int(isum);
  }
};

Value Percentile(std::vector<double> xs, double p, bool discrete) {
  if (xs.empty()) return Value::Null();
  std::sort(xs.begin(), xs.end());
  const size_t n = xs.size();
  if (discrete) {
    auto idx = static_cast<int64_t>(std::ceil(p * static_cast<double>(n))) - 1;
    idx = std::clamp<int64_t>(idx, 0, static_cast<int64_t>(n) - 1);
    return Value::Float(xs[static_cast<size_t>(idx)]);
  }
  const double rank = p * static_cast<double>(n - 1);
  const auto lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, n - 1);
  return Value::Float(xs[lo] + (rank - static_cast<double>(lo)) * (xs[hi] - xs[lo]));
}

}  // namespace

class Rule::Impl {
 public:
  Impl(const Select& select, const CreateStream& stream, const RuleOptions& options)
      : sel_(select), stream_(stream), options_(options) {}

  void Init() {
    event_time_ = !stream_.typed.timestamp.empty();
    tolerance_ = event_time_ ? std::clamp<int64_t>(options_.late_tolerance_ms, 0, kMaxTime) : 0;
    auto collect = [&](const Expr& e) { Collect(e); };
    for (const Field& f : sel_.fields) collect(f.expr);
    if (sel_.where) collect(*sel_.where);
    if (sel_.window && sel_.window->filter) collect(*sel_.window->filter);
    if (sel_.window && sel_.window->trigger) collect(*sel_.window->trigger);
    for (const Expr& g : sel_.group_by) collect(g);
    if (sel_.having) collect(*sel_.having);
    for (const OrderItem& o : sel_.order_by) collect(o.expr);
    analytic_state_ = std::vector<Partitions>(analytics_.size());
    if (sel_.window &&
        (sel_.window->kind == WindowKind::kTumbling || sel_.window->kind == WindowKind::kHopping) &&
        (!sel_.group_by.empty() || !aggregates_.empty())) {
      incremental_ = std::all_of(aggregates_.begin(), aggregates_.end(),
                                 [](const Expr* e) { return IsIncremental(e->name); });
    }
    slot_list_.assign(slots_.begin(), slots_.end());
    std::sort(slot_list_.begin(), slot_list_.end(), [](const auto& a, const auto& b) {
      return std::less<const Expr*>()(a.first, b.first);
    });
    for (const Expr* e : aggregates_) agg_kinds_.push_back(AggKindOf(e->name));
    for (const Expr* e : analytics_) analytic_kinds_.push_back(AnalyticKindOf(e->name));
    agg_in_.assign(aggregates_.size(), nullptr);
    agg_tmp_.assign(aggregates_.size(), Value::Null());
    for (const Field& f : sel_.fields)
      names_.push_back(f.alias.empty() ? DefaultName(f.expr) : f.alias);
    star_only_ = sel_.fields.size() == 1 && sel_.fields[0].expr.kind == ExprKind::kStar;
    InitBinding();
  }

  std::vector<Emission> Push(const Row& input, int64_t ts) {
    std::vector<Emission> out;
    ++counters_.records_in;
    if (!input.is_object()) {
      Exception(Status(Code::kInvalidArgument, fmt::format("an event must be an object, found {}",
                                                           TypeName(input.type()))));
      return out;
    }
    if (ts < -kMaxTime || ts > kMaxTime) {
      Exception(
          Status(Code::kInvalidArgument,
                 fmt::format("the timestamp {} is out of range (at most 2^53 ms from 1970)", ts)));
      return out;
    }
    // The bound columns point into this event: forget them when it is done.
    struct Unbind {
      BoundColumns& bound;
      ~Unbind() { bound.object = nullptr; }
    } unbind{bound_};
    // The event with its declared columns converted (copied only when one converts).
    const Value* row = &input;
    Value coerced;
    if (Bind(input)) {
      coerced = Coerce(input);
      Bind(coerced);
      row = &coerced;
    }
    const Window* w = sel_.window ? &*sel_.window : nullptr;
    if (w != nullptr && w->kind != WindowKind::kCount && ts < watermark_) {
      ++counters_.late;
      return out;
    }
    // Analytic functions see every event, before any filter.
    if (w == nullptr) {
      // The event is not kept: its analytic values go in a vector reused from event to event
      // (ComputeAnalytics sets every slot before anything reads it).
      std::vector<Value>& analytic = analytic_scratch_;
      if (analytic.size() != analytics_.size()) analytic.assign(analytics_.size(), Value::Null());
      if (Status s = ComputeAnalytics(*row, ts, analytic); !s.ok()) {
        Exception(s);
        return out;
      }
      PushUnwindowed(RowScope(*row, ts, analytic), out);
      return out;
    }
    // The event as a window keeps it; its row is copied in only where it is kept.
    Stored st;
    st.ts = ts;
    st.analytic.assign(analytics_.size(), Value::Null());
    if (Status s = ComputeAnalytics(*row, ts, st.analytic); !s.ok()) {
      Exception(s);
      return out;
    }
    EvalScope scope = RowScope(*row, ts, st.analytic);
    if (w->filter) {
      auto in = EvalCondition(*w->filter, scope);
      if (!in.ok()) {
        Exception(in.status());
        return out;
      }
      if (!*in) {
        Advance(ts, out);
        return out;
      }
    }
    if (sel_.where) {
      auto pass = EvalCondition(*sel_.where, scope);
      if (!pass.ok()) {
        Exception(pass.status());
        return out;
      }
      st.pass = *pass;
    }
    bool trigger = true;
    if (w->kind == WindowKind::kSliding && w->trigger) {
      auto t = EvalCondition(*w->trigger, scope);
      if (!t.ok()) {
        Exception(t.status());
        return out;
      }
      trigger = *t;
    }
    if (w->kind == WindowKind::kCount) {
      st.row = *row;
      buffer_.push_back(std::move(st));
      while (static_cast<int64_t>(buffer_.size()) > w->count) buffer_.pop_front();
      ++count_total_;
      const int64_t hop = w->count_hop > 0 ? w->count_hop : w->count;
      if (static_cast<int64_t>(count_total_) >= w->count &&
          static_cast<int64_t>(count_total_) % hop == 0) {
        std::vector<const Stored*> rows;
        for (const Stored& s : buffer_) rows.push_back(&s);
        EmitWindow(rows, rows.front()->ts, rows.back()->ts, out);
      }
      return out;
    }
    if (!st.pass && w->kind != WindowKind::kSliding && w->kind != WindowKind::kSession) {
      // A time window never shows it; sessions and sliding windows still use it for time.
      Advance(ts, out);
      return out;
    }
    if (incremental_) {
      Accumulate(*row, st);
      Advance(ts, out);
      return out;
    }
    // Keep the buffer sorted by time; late arrivals within the tolerance go in their place.
    auto at = std::upper_bound(buffer_.begin(), buffer_.end(), ts,
                               [](int64_t t, const Stored& s) { return t < s.ts; });
    st.row = *row;
    buffer_.insert(at, std::move(st));
    if (w->kind == WindowKind::kSliding && trigger) {
      auto t = std::upper_bound(triggers_.begin(), triggers_.end(), ts);
      triggers_.insert(t, ts);
    }
    Advance(ts, out);
    return out;
  }

  // WHERE and the projection of one event of a rule without a window.
  void PushUnwindowed(const EvalScope& scope, std::vector<Emission>& out) {
    if (sel_.where) {
      auto pass = EvalCondition(*sel_.where, scope);
      if (!pass.ok()) {
        Exception(pass.status());
        return;
      }
      if (!*pass) return;
    }
    auto row = Project(scope);
    if (!row.ok()) {
      Exception(row.status());
      return;
    }
    counters_.records_out += 1;
    out.emplace_back().push_back(std::move(*row));
  }

  std::vector<Emission> AdvanceTo(int64_t t) {
    std::vector<Emission> out;
    Advance(std::clamp(t, -kMaxTime, kMaxTime), out);
    return out;
  }

  int64_t watermark() const { return watermark_; }
  const RuleCounters& counters() const { return counters_; }

 private:
  // --- setup ------------------------------------------------------------------------------

  // Gives every aggregate and analytic call a slot, inner calls first.
  void Collect(const Expr& e) {
    ForEachChild(e, [&](const Expr& c) { Collect(c); });
    if (e.kind != ExprKind::kCall || slots_.count(&e) != 0) return;
    if (e.function->kind == FunctionKind::kAggregate) {
      slots_[&e] = aggregates_.size();
      aggregates_.push_back(&e);
    } else if (e.function->kind == FunctionKind::kAnalytic) {
      const size_t slot = analytics_.size();
      slots_[&e] = slot;
      // A call written twice (`zscore(x, 60) AS z ... WHERE abs(zscore(x, 60)) > 3`) would
      // keep two states that evolve alike: the later one takes the earlier one's result.
      size_t same = slot;
      if (Deterministic(e)) {
        for (size_t j = 0; j < slot && same == slot; ++j) {
          // == holds for -0.0 and 0.0 literals; the canonical text tells them apart.
          if (analytic_same_[j] == j && *analytics_[j] == e &&
              ToString(*analytics_[j]) == ToString(e)) {
            same = j;
          }
        }
      }
      analytics_.push_back(&e);
      analytic_same_.push_back(same);
    }
  }

  // A partition or group key: no key is null, one key its value, several an array (so the
  // common cases allocate nothing).
  static Value KeyOf(Array key) {
    if (key.empty()) return Value::Null();
    if (key.size() == 1) return std::move(key[0]);
    return Value::MakeArray(std::move(key));
  }

  // EvalKey without a copy where it can (see EvalRef): a pointer to the key, or to `tmp`.
  static Result<const Value*> EvalKeyRef(const std::vector<Expr>& exprs, const EvalScope& scope,
                                         Value& tmp) {
    if (exprs.size() == 1) return EvalRef(exprs[0], scope, tmp);
    VERGE_ASSIGN_OR_RETURN(tmp, EvalKey(exprs, scope));
    return &tmp;
  }

  // The key of `exprs` (GROUP BY, PARTITION BY) for one event, see KeyOf.
  static Result<Value> EvalKey(const std::vector<Expr>& exprs, const EvalScope& scope) {
    if (exprs.empty()) return Value::Null();
    if (exprs.size() == 1) return Eval(exprs[0], scope);
    Array key;
    key.reserve(exprs.size());
    for (const Expr& g : exprs) {
      VERGE_ASSIGN_OR_RETURN(Value v, Eval(g, scope));
      key.push_back(std::move(v));
    }
    return Value::MakeArray(std::move(key));
  }

  // --- column binding ---------------------------------------------------------------------
  //
  // Every column the rule names, and every declared column Coerce() may convert, is looked up
  // once per event, in one walk over the event's columns (both in byte order), instead of once
  // per evaluation of a column node (EvalScope::columns).

  void InitBinding() {
    std::map<std::string, std::optional<TypeKind>, std::less<>> names;
    for (const ColumnDef& c : stream_.columns) {
      if (c.type.kind == TypeKind::kFloat || c.type.kind == TypeKind::kBigint ||
          c.type.kind == TypeKind::kDatetime) {
        names[c.name] = c.type.kind;
      }
    }
    std::vector<const Expr*> nodes;
    auto visit = [&](const Expr& e, auto& self) -> void {
      if (e.kind == ExprKind::kColumn) {
        names.try_emplace(e.name);
        nodes.push_back(&e);
      }
      ForEachChild(e, [&](const Expr& c) { self(c, self); });
    };
    auto collect = [&](const Expr& e) { visit(e, visit); };
    for (const Field& f : sel_.fields) collect(f.expr);
    if (sel_.where) collect(*sel_.where);
    if (sel_.window && sel_.window->filter) collect(*sel_.window->filter);
    if (sel_.window && sel_.window->trigger) collect(*sel_.window->trigger);
    for (const Expr& g : sel_.group_by) collect(g);
    if (sel_.having) collect(*sel_.having);
    for (const OrderItem& o : sel_.order_by) collect(o.expr);
    for (const auto& [name, kind] : names) {
      bound_names_.push_back(name);
      bound_prefixes_.push_back(Prefix(name));
      bound_kinds_.push_back(kind);
    }
    for (const Expr* e : nodes) {
      auto at = std::lower_bound(bound_names_.begin(), bound_names_.end(), e->name);
      bound_nodes_.emplace_back(e, static_cast<size_t>(at - bound_names_.begin()));
    }
    std::sort(bound_nodes_.begin(), bound_nodes_.end(), [](const auto& a, const auto& b) {
      return std::less<const Expr*>()(a.first, b.first);
    });
    bound_values_.assign(bound_names_.size(), nullptr);
    bound_.nodes = bound_nodes_;
    bound_.names = bound_names_;
    bound_.values = bound_values_;
    coercible_ = std::any_of(bound_kinds_.begin(), bound_kinds_.end(),
                             [](const std::optional<TypeKind>& k) { return k.has_value(); });
  }

  // The first 8 bytes of a name as a big-endian number (zero-padded): names whose prefixes
  // differ are in the order of their prefixes.
  static uint64_t Prefix(std::string_view s) {
    uint64_t x = 0;
    if (s.size() >= 8) {
      std::memcpy(&x, s.data(), 8);
      if constexpr (std::endian::native == std::endian::little) x = __builtin_bswap64(x);
      return x;
    }
    for (size_t i = 0; i < 8; ++i) {
      x = (x << 8) | (i < s.size() ? static_cast<unsigned char>(s[i]) : 0);
    }
    return x;
  }

  // Byte order of column name `key` and bound name i, as std::string compares them.
  int KeyCompare(std::string_view key, size_t i) const {
    const uint64_t p = Prefix(key);
    if (p != bound_prefixes_[i]) return p < bound_prefixes_[i] ? -1 : 1;
    const std::string_view name = bound_names_[i];
    const size_t n = std::min(key.size(), name.size());
    for (size_t k = 8; k < n; ++k) {
      const auto x = static_cast<unsigned char>(key[k]);
      const auto y = static_cast<unsigned char>(name[k]);
      if (x != y) return x < y ? -1 : 1;
    }
    return key.size() == name.size() ? 0 : (key.size() < name.size() ? -1 : 1);
  }

  // Binds the columns to `row` (an object) for evaluations on `row` itself. Returns whether a
  // declared column holds a value Coerce() converts. Without declared columns to check, each
  // column is looked up on its first use (BoundColumns::Find): no walk over the whole event.
  bool Bind(const Value& row) {
    bound_.object = &row.object_value();
    if (!coercible_) {
      std::fill(bound_values_.begin(), bound_values_.end(), BoundColumns::NotLookedUp());
      return false;
    }
    auto needs = [](std::optional<TypeKind> kind, const Value& v) {
      return (kind == TypeKind::kFloat && v.is_int()) ||
             (kind == TypeKind::kBigint && v.is_float()) ||
             (kind == TypeKind::kDatetime && v.is_string());
    };
    bool coerce = false;
    const Object& o = row.object_value();
    if (o.size() > 4 * bound_names_.size() + 8) {
      for (size_t i = 0; i < bound_names_.size(); ++i) {
        bound_values_[i] = row.Find(bound_names_[i]);
        if (bound_values_[i] != nullptr)
          coerce = coerce || needs(bound_kinds_[i], *bound_values_[i]);
      }
      return coerce;
    }
    auto it = o.begin();
    for (size_t i = 0; i < bound_names_.size(); ++i) {
      int c = 1;
      while (it != o.end() && (c = KeyCompare(it->first, i)) < 0) ++it;
      if (it == o.end() || c != 0) {
        bound_values_[i] = nullptr;
        continue;
      }
      bound_values_[i] = &it->second;
      coerce = coerce || needs(bound_kinds_[i], it->second);
    }
    return coerce;
  }

  // The event with its declared columns converted (see Rule::Push). REQUIRES: Bind(row) found
  // something to convert.
  Value Coerce(const Value& row) const {
    Object o = row.object_value();
    bool changed = false;
    for (const ColumnDef& c : stream_.columns) {
      auto it = o.find(c.name);
      if (it == o.end() || it->second.is_null()) continue;
      Value& v = it->second;
      if (c.type.kind == TypeKind::kFloat && v.is_int()) {
        v = Value::Float(static_cast<double>(v.int_value()));
        changed = true;
      } else if (c.type.kind == TypeKind::kBigint && v.is_float() &&
                 v.float_value() == std::trunc(v.float_value())) {
        if (auto i = ToInt(v)) {
          v = Value::Int(*i);
          changed = true;
        }
      } else if (c.type.kind == TypeKind::kDatetime && v.is_string()) {
        if (auto ms = DatetimeMillis(v)) {
          v = Value::Int(*ms);
          changed = true;
        }
      }
    }
    return changed ? Value::MakeObject(std::move(o)) : row;
  }

  EvalScope RowScope(const Value& row, int64_t ts, std::span<const Value> analytic) const {
    EvalScope s;
    s.row = &row;
    s.columns = &bound_;
    s.slots = slot_list_;
    s.analytic = analytic;
    s.now_ms = clock_ == kNever ? ts : clock_;
    s.event_ms = ts;
    return s;
  }
  EvalScope RowScope(const Stored& st) const { return RowScope(st.row, st.ts, st.analytic); }

  void Exception(const Status& s) {
    ++counters_.exceptions;
    counters_.last_error = s.message();
  }

  // --- analytic functions ---------------------------------------------------------------

  // The event's analytic values, by slot, into `analytic` (sized).
  Status ComputeAnalytics(const Value& row, int64_t ts, std::vector<Value>& analytic) {
    for (size_t i = 0; i < analytics_.size(); ++i) {
      if (analytic_same_[i] != i) {
        analytic[i] = analytic[analytic_same_[i]];
        continue;
      }
      const Expr& call = *analytics_[i];
      EvalScope scope = RowScope(row, ts, analytic);
      Value key_tmp;
      VERGE_ASSIGN_OR_RETURN(const Value* key, EvalKeyRef(call.partition_by, scope, key_tmp));
      Partitions& parts = analytic_state_[i];
      std::optional<size_t> at = parts.index.Find(*key);
      if (!at) {
        at = parts.states.size();
        parts.index.Add(*key, *at);
        parts.states.emplace_back();
      }
      AnalyticState& state = parts.states[*at];
      if (call.when) {
        VERGE_ASSIGN_OR_RETURN(bool when, EvalCondition(*call.when, scope));
        if (!when) {
          analytic[i] = state.last;
          continue;
        }
      }
      // The arguments, without copies where they can be (see EvalRef).
      const size_t n = call.args.size();
      if (arg_tmp_.size() < n) {
        arg_tmp_.resize(n);
        arg_ptr_.resize(n);
      }
      for (size_t k = 0; k < n; ++k) {
        VERGE_ASSIGN_OR_RETURN(arg_ptr_[k], EvalRef(call.args[k], scope, arg_tmp_[k]));
      }
      const ArgRefs args{std::span<const Value* const>(arg_ptr_.data(), n)};
      VERGE_ASSIGN_OR_RETURN(Value result, Analytic(call, analytic_kinds_[i], args, state));
      state.last = result;
      analytic[i] = std::move(result);
    }
    return Status::Ok();
  }

  // An analytic call's evaluated arguments.
  struct ArgRefs {
    std::span<const Value* const> p;
    size_t size() const { return p.size(); }
    const Value& operator[](size_t i) const { return *p[i]; }
  };

  static Result<Value> Analytic(const Expr& call, AnalyticKind kind, const ArgRefs& a,
                                AnalyticState& s) {
    const std::string_view f = call.name;
    if (kind == AnalyticKind::kLag) {
      const size_t offset = a.size() >= 2 ? static_cast<size_t>(a[1].int_value()) : 1;
      const Value dflt = a.size() >= 3 ? a[2] : Value::Null();
      const bool ignore_null = a.size() >= 4 && Truthy(a[3]);
      if (!s.history) s.history = std::make_unique<std::deque<Value>>();
      std::deque<Value>& history = *s.history;
      Value result = history.size() >= offset ? history[history.size() - offset] : dflt;
      if (!(ignore_null && a[0].is_null())) {
        history.push_back(a[0]);
        if (history.size() > offset) history.pop_front();
      }
      return result;
    }
    if (kind == AnalyticKind::kLatest) {
      if (!a[0].is_null()) s.prev.assign(1, a[0]);
      if (!s.prev.empty()) return s.prev[0];
      return a.size() >= 2 ? a[1] : Value::Null();
    }
    if (kind == AnalyticKind::kChangedCol) {
      const bool ignore_null = Truthy(a[0]);
      const Value& x = a[1];
      if (ignore_null && x.is_null()) return Value::Null();
      const bool changed = s.prev.empty() || !Equals(s.prev[0], x);
      s.prev.assign(1, x);
      return changed ? x : Value::Null();
    }
    if (kind == AnalyticKind::kHadChanged) {
      const bool ignore_null = Truthy(a[0]);
      const size_t n = a.size() - 1;
      if (s.prev.size() != n) {
        s.prev.assign(n, Value::Null());
        s.has_prev.assign(n, false);
      }
      bool changed = false;
      for (size_t i = 0; i < n; ++i) {
        const Value& x = a[i + 1];
        if (ignore_null && x.is_null()) continue;
        if (!s.has_prev[i] || !Equals(s.prev[i], x)) changed = true;
        s.prev[i] = x;
        s.has_prev[i] = true;
      }
      return Value::Bool(changed);
    }
    if (IsAcc(kind)) {
      const Value& x = a[0];
      if (!x.is_null()) {
        if (kind == AnalyticKind::kAccCount) {
          ++s.count;
        } else if (kind == AnalyticKind::kAccMin || kind == AnalyticKind::kAccMax) {
          Value& cur = kind == AnalyticKind::kAccMin ? s.min : s.max;
          if (cur.is_null()) {
            cur = x;
          } else {
            Cmp c = Compare(x, cur);
            if (c == Cmp::kIncompatible) {
              return RuntimeError(call.pos, fmt::format("{}() cannot compare {} with {}", f,
                                                        TypeName(x.type()), TypeName(cur.type())));
            }
            if ((kind == AnalyticKind::kAccMin && c == Cmp::kLess) ||
                (kind == AnalyticKind::kAccMax && c == Cmp::kGreater)) {
              cur = x;
            }
          }
        } else {
          if (!x.is_number()) {
            return RuntimeError(call.pos,
                                fmt::format("{}() needs numbers, found {}", f, TypeName(x.type())));
          }
          ++s.count;
          if (x.is_int() && !s.any_float) {
            s.isum = static_cast<int64_t>(static_cast<uint64_t>(s.isum) +
                                          static_cast<uint64_t>(x.int_value()));
          } else {
            if (!s.any_float) s.fsum = static_cast<double>(s.isum);
            s.any_float = true;
            s.fsum += x.number_value();
          }
        }
      }
      if (kind == AnalyticKind::kAccCount) return Value::Int(s.count);
      if (kind == AnalyticKind::kAccMin) return s.min;
      if (kind == AnalyticKind::kAccMax) return s.max;
      if (s.count == 0) return Value::Null();
      const double total = s.any_float ? s.fsum : static_cast<double>(s.isum);
      if (kind == AnalyticKind::kAccAvg) return Value::Float(total / static_cast<double>(s.count));
      return s.any_float ? Value::Float(s.fsum) : Value::Int(s.isum);
    }
    if (kind == AnalyticKind::kZscore || kind == AnalyticKind::kEwmaScore) {
      const Value& x = a[0];
      if (x.is_null()) return Value::Null();
      if (!x.is_number()) {
        return RuntimeError(call.pos,
                            fmt::format("{}() needs a number, found {}", f, TypeName(x.type())));
      }
      const double v = x.number_value();
      Value result = Value::Null();
      if (kind == AnalyticKind::kZscore) {
        const auto n = static_cast<size_t>(a[1].int_value());
        const size_t size = s.ring.size();
        if (size >= 2) {
          double sum = 0;
          ForEachOldestFirst(s, n, [&](double h) { sum += h; });
          const double mean = sum / static_cast<double>(size);
          double sq = 0;
          ForEachOldestFirst(s, n, [&](double h) { sq += (h - mean) * (h - mean); });
          const double sd = std::sqrt(sq / static_cast<double>(size));
          if (sd > 0) result = Value::Float((v - mean) / sd);
        }
        if (size < n) {
          s.ring.push_back(v);
        } else {
          s.ring[s.ring_next] = v;
          if (++s.ring_next == n) s.ring_next = 0;
        }
        return result;
      }
      const double alpha = a[1].number_value();
      if (s.count >= 2) {
        const double sd = std::sqrt(s.var);
        if (sd > 0) result = Value::Float(std::fabs(v - s.mean) / sd);
      }
      if (s.count == 0) {
        s.mean = v;
        s.var = 0;
      } else {
        const double diff = v - s.mean;
        s.mean += alpha * diff;
        s.var = (1 - alpha) * (s.var + alpha * diff * diff);
      }
      ++s.count;
      return result;
    }
    return RuntimeError(call.pos, fmt::format("{}() is not an analytic function", f));
  }

  // --- aggregates ---------------------------------------------------------------------------

  Result<Value> Aggregate(const Expr& call, const std::vector<const Stored*>& rows,
                          const EvalScope& base) {
    const std::string_view f = call.name;
    std::vector<Value> xs;
    std::vector<const Stored*> kept;
    for (const Stored* st : rows) {
      EvalScope scope = base;
      scope.row = &st->row;
      scope.analytic = st->analytic;
      scope.event_ms = st->ts;
      if (call.filter) {
        VERGE_ASSIGN_OR_RETURN(bool in, EvalCondition(*call.filter, scope));
        if (!in) continue;
      }
      Value x;
      if (call.args[0].kind == ExprKind::kStar) {
        x = st->row;
      } else {
        VERGE_ASSIGN_OR_RETURN(x, Eval(call.args[0], scope));
      }
      xs.push_back(std::move(x));
      kept.push_back(st);
    }
    if (f == "count") {
      if (call.args[0].kind == ExprKind::kStar) return Value::Int(static_cast<int64_t>(xs.size()));
      return Value::Int(static_cast<int64_t>(
          std::count_if(xs.begin(), xs.end(), [](const Value& v) { return !v.is_null(); })));
    }
    if (f == "collect") return Value::MakeArray(std::move(xs));
    if (f == "last_value") {
      const bool ignore_null =
          call.args.size() < 2 || call.args[1].value.is_null() || Truthy(call.args[1].value);
      for (auto it = xs.rbegin(); it != xs.rend(); ++it) {
        if (!ignore_null || !it->is_null()) return *it;
      }
      return Value::Null();
    }
    if (f == "deduplicate") {
      const bool all = Truthy(call.args[1].value);
      std::vector<Value> seen;
      Array out;
      for (size_t i = 0; i < xs.size(); ++i) {
        bool dup =
            std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equals(s, xs[i]); });
        if (!dup) {
          seen.push_back(xs[i]);
          if (all) out.push_back(kept[i]->row);
        }
        if (!all && i + 1 == xs.size()) return dup ? Value::Null() : kept[i]->row;
      }
      if (!all) return Value::Null();
      return Value::MakeArray(std::move(out));
    }
    if (f == "min" || f == "max") {
      Value best;
      for (const Value& x : xs) {
        if (x.is_null()) continue;
        if (best.is_null()) {
          best = x;
          continue;
        }
        Cmp c = Compare(x, best);
        if (c == Cmp::kIncompatible) {
          return RuntimeError(call.pos, fmt::format("{}() cannot compare {} with {}", f,
                                                    TypeName(x.type()), TypeName(best.type())));
        }
        if ((f == "min" && c == Cmp::kLess) || (f == "max" && c == Cmp::kGreater)) best = x;
      }
      return best;
    }
    // Numeric aggregates: nulls skipped, anything else not a number is an error.
    std::vector<double> nums;
    Summer sum;
    for (const Value& x : xs) {
      if (x.is_null()) continue;
      if (!x.is_number()) {
        return RuntimeError(call.pos,
                            fmt::format("{}() needs numbers, found {}", f, TypeName(x.type())));
      }
      sum.Add(x);
      nums.push_back(x.number_value());
    }
    if (f == "sum") return sum.Get();
    if (nums.empty()) return Value::Null();
    const auto n = static_cast<double>(nums.size());
    double total = 0;
    for (double d : nums) total += d;
    const double mean = total / n;
    if (f == "avg") return Value::Float(mean);
    if (f == "median") return Percentile(std::move(nums), 0.5, false);
    if (f == "percentile" || f == "percentile_disc") {
      return Percentile(std::move(nums), call.args[1].value.number_value(), f == "percentile_disc");
    }
    double sq = 0;
    for (double d : nums) sq += (d - mean) * (d - mean);
    if (f == "var") return Value::Float(sq / n);
    if (f == "stddev") return Value::Float(std::sqrt(sq / n));
    if (nums.size() < 2) return Value::Null();
    if (f == "vars") return Value::Float(sq / (n - 1));
    if (f == "stddevs") return Value::Float(std::sqrt(sq / (n - 1)));
    return RuntimeError(call.pos, fmt::format("{}() is not an aggregate function", f));
  }

  // --- projection ---------------------------------------------------------------------------

  Result<Value> Project(const EvalScope& scope) {
    // `SELECT *` alone: the event as it is (its payload is immutable and shared).
    if (star_only_ && scope.row != nullptr && scope.row->is_object()) return *scope.row;
    Object out;
    for (size_t i = 0; i < sel_.fields.size(); ++i) {
      const Field& f = sel_.fields[i];
      if (f.expr.kind == ExprKind::kStar) {
        if (scope.row != nullptr && scope.row->is_object()) {
          for (const auto& [k, v] : scope.row->object_value()) out.emplace(k, v);
        }
        continue;
      }
      VERGE_ASSIGN_OR_RETURN(Value v, Eval(f.expr, scope));
      if (v.is_null()) continue;
      if (!names_[i].empty()) {
        out.emplace(names_[i], std::move(v));
        continue;
      }
      std::string name;
      for (int n = 0;; ++n) {
        name = fmt::format("kuiper_field_{}", n);
        if (out.find(name) == out.end()) break;
      }
      out.emplace(std::move(name), std::move(v));
    }
    return Value::MakeObject(std::move(out));
  }

  // --- windows ------------------------------------------------------------------------------

  void Advance(int64_t t, std::vector<Emission>& out) {
    clock_ = std::max(clock_, t);
    if (t == kNever) return;
    const int64_t w = t - tolerance_;
    if (w <= watermark_) return;
    watermark_ = w;
    if (sel_.window) Fire(out);
  }

  void Fire(std::vector<Emission>& out) {
    const Window& w = *sel_.window;
    switch (w.kind) {
      case WindowKind::kTumbling:
      case WindowKind::kHopping:
        if (incremental_) {
          FireIncremental(w, out);
        } else {
          FireHopping(w, out);
        }
        break;
      case WindowKind::kSliding:
        FireSliding(w, out);
        break;
      case WindowKind::kSession:
        FireSession(w, out);
        break;
      case WindowKind::kCount:
        break;
    }
  }

  void FireHopping(const Window& w, std::vector<Emission>& out) {
    const int64_t len = w.length_ms;
    const int64_t hop = w.hop_ms > 0 ? w.hop_ms : len;
    while (!buffer_.empty()) {
      const int64_t ts0 = buffer_.front().ts;
      // The first window holding ts0: the smallest k with k*hop + len > ts0.
      int64_t end = (FloorDiv(ts0 - len, hop) + 1) * hop + len;
      if (last_end_ != kNever) end = std::max(end, last_end_ + hop);
      if (end > watermark_) break;
      const int64_t start = end - len;
      std::vector<const Stored*> rows;
      for (const Stored& s : buffer_) {
        if (s.ts >= end) break;
        if (s.ts >= start) rows.push_back(&s);
      }
      EmitWindow(rows, start, end, out);
      last_end_ = end;
      const int64_t next_start = start + hop;
      while (!buffer_.empty() && buffer_.front().ts < next_start) buffer_.pop_front();
    }
  }

  void FireSliding(const Window& w, std::vector<Emission>& out) {
    while (!triggers_.empty() && triggers_.front() + w.delay_ms <= watermark_) {
      const int64_t t = triggers_.front();
      triggers_.pop_front();
      const int64_t start = t - w.length_ms;
      const int64_t end = t + w.delay_ms;
      std::vector<const Stored*> rows;
      for (const Stored& s : buffer_) {
        if (s.ts > end) break;
        if (s.ts > start) rows.push_back(&s);
      }
      EmitWindow(rows, start, end, out);
    }
    int64_t keep_after = watermark_ - w.length_ms;
    if (!triggers_.empty()) keep_after = std::min(keep_after, triggers_.front() - w.length_ms);
    while (!buffer_.empty() && buffer_.front().ts <= keep_after) buffer_.pop_front();
  }

  void FireSession(const Window& w, std::vector<Emission>& out) {
    while (!buffer_.empty()) {
      const int64_t start = buffer_.front().ts;
      const int64_t boundary = (FloorDiv(start, w.length_ms) + 1) * w.length_ms;
      int64_t last = start;
      size_t n = 1;
      while (n < buffer_.size() && buffer_[n].ts - last < w.timeout_ms &&
             buffer_[n].ts < boundary) {
        last = buffer_[n].ts;
        ++n;
      }
      const int64_t end = std::min(last + w.timeout_ms, boundary);
      if (end > watermark_) break;
      std::vector<const Stored*> rows;
      for (size_t i = 0; i < n; ++i) rows.push_back(&buffer_[i]);
      EmitWindow(rows, start, end, out);
      buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(n));
    }
  }

  void EmitWindow(const std::vector<const Stored*>& all, int64_t start, int64_t end,
                  std::vector<Emission>& out) {
    std::vector<const Stored*> rows;
    for (const Stored* s : all) {
      if (s->pass) rows.push_back(s);
    }
    if (rows.empty()) return;
    // Groups, in the order of their first event.
    std::vector<std::vector<const Stored*>> groups;
    if (!sel_.group_by.empty()) {
      std::unordered_map<Value, size_t, ValueHash, ValueEq> index;
      for (const Stored* s : rows) {
        EvalScope scope = RowScope(*s);
        Array key;
        bool ok = true;
        for (const Expr& g : sel_.group_by) {
          auto v = Eval(g, scope);
          if (!v.ok()) {
            Exception(v.status());
            ok = false;
            break;
          }
          key.push_back(std::move(*v));
        }
        if (!ok) continue;
        auto [it, fresh] = index.emplace(KeyOf(std::move(key)), groups.size());
        if (fresh) groups.emplace_back();
        groups[it->second].push_back(s);
      }
    } else if (!aggregates_.empty()) {
      groups.push_back(rows);
    } else {
      for (const Stored* s : rows) groups.push_back({s});
    }
    const size_t n = aggregates_.size();
    std::vector<Value> aggs(groups.size() * n);  // by group, then slot
    std::vector<GroupOut> done;
    done.reserve(groups.size());
    for (size_t k = 0; k < groups.size(); ++k) {
      const auto& g = groups[k];
      EvalScope scope = RowScope(*g.front());
      scope.window_start = start;
      scope.window_end = end;
      const std::span<Value> mine(aggs.data() + k * n, n);
      bool ok = true;
      for (size_t i = 0; i < n && ok; ++i) {
        auto v = Aggregate(*aggregates_[i], g, scope);
        if (!v.ok()) {
          Exception(v.status());
          ok = false;
        } else {
          mine[i] = std::move(*v);
        }
      }
      if (ok) done.push_back(GroupOut{g.front(), mine});
    }
    EmitGroups(done, start, end, out);
  }

  // One aggregated group of a window: its first event and its aggregates' values by slot.
  struct GroupOut {
    const Stored* first;
    std::span<const Value> aggs;
  };

  // HAVING, projection and ORDER BY over the groups of one window; one emission if any row.
  void EmitGroups(const std::vector<GroupOut>& groups, int64_t start, int64_t end,
                  std::vector<Emission>& out) {
    struct OutRow {
      Value row;
      std::vector<Value> keys;
    };
    std::vector<OutRow> result;
    result.reserve(groups.size());
    for (const GroupOut& g : groups) {
      EvalScope scope = RowScope(*g.first);
      scope.window_start = start;
      scope.window_end = end;
      scope.aggregate = g.aggs;
      bool ok = true;
      if (sel_.having) {
        auto h = EvalCondition(*sel_.having, scope);
        if (!h.ok()) {
          Exception(h.status());
          continue;
        }
        if (!*h) continue;
      }
      auto row = Project(scope);
      if (!row.ok()) {
        Exception(row.status());
        continue;
      }
      OutRow o{std::move(*row), {}};
      for (const OrderItem& item : sel_.order_by) {
        auto k = Eval(item.expr, scope);
        if (!k.ok()) {
          Exception(k.status());
          ok = false;
          break;
        }
        o.keys.push_back(std::move(*k));
      }
      if (ok) result.push_back(std::move(o));
    }
    if (!sel_.order_by.empty()) {
      std::stable_sort(result.begin(), result.end(), [&](const OutRow& a, const OutRow& b) {
        for (size_t i = 0; i < a.keys.size(); ++i) {
          const bool desc = sel_.order_by[i].descending;
          const Value& x = a.keys[i];
          const Value& y = b.keys[i];
          // Nulls sort first ascending, last descending; incompatible types keep their order.
          if (x.is_null() || y.is_null()) {
            if (x.is_null() == y.is_null()) continue;
            return desc ? y.is_null() : x.is_null();
          }
          Cmp c = Compare(x, y);
          if (c == Cmp::kLess) return !desc;
          if (c == Cmp::kGreater) return desc;
        }
        return false;
      });
    }
    if (result.empty()) return;
    Emission e;
    e.reserve(result.size());
    for (OutRow& r : result) e.push_back(std::move(r.row));
    counters_.records_out += e.size();
    out.push_back(std::move(e));
  }

  // --- incremental aggregation (tumbling and hopping windows) -----------------------------
  //
  // When every aggregate of the rule keeps a small state (count, sum, avg, min, max, stddev,
  // stddevs, var, vars, last_value) and there is something to group (keys or aggregates), a
  // tumbling or hopping window keeps per group its first event (for the non-aggregate
  // columns) and one AggState per aggregate, not its events.

  static bool IsIncremental(std::string_view f) {
    return f == "count" || f == "sum" || f == "avg" || f == "min" || f == "max" || f == "stddev" ||
           f == "stddevs" || f == "var" || f == "vars" || f == "last_value";
  }
  // The incremental aggregates, and kOther for the rest.
  enum class AggKind : uint8_t {
    kCount,
    kSum,
    kAvg,
    kMin,
    kMax,
    kStddev,
    kStddevs,
    kVar,
    kVars,
    kLastValue,
    kOther
  };
  static AggKind AggKindOf(std::string_view f) {
    static constexpr std::pair<std::string_view, AggKind> kNames[] = {
        {"count", AggKind::kCount},     {"sum", AggKind::kSum},
        {"avg", AggKind::kAvg},         {"min", AggKind::kMin},
        {"max", AggKind::kMax},         {"stddev", AggKind::kStddev},
        {"stddevs", AggKind::kStddevs}, {"var", AggKind::kVar},
        {"vars", AggKind::kVars},       {"last_value", AggKind::kLastValue}};
    for (const auto& [name, kind] : kNames) {
      if (f == name) return kind;
    }
    return AggKind::kOther;
  }
  static bool IsNumeric(AggKind k) {
    return k == AggKind::kSum || k == AggKind::kAvg || IsSpread(k);
  }
  // Aggregates that need the running variance (Welford).
  static bool IsSpread(AggKind k) {
    return k == AggKind::kStddev || k == AggKind::kStddevs || k == AggKind::kVar ||
           k == AggKind::kVars;
  }

  struct AggState {
    int64_t count = 0;
    Summer sum;
    double mean = 0;  // Welford
    double m2 = 0;
    Value best;  // min, max
    Value last;  // last_value
  };
  // The groups of one open window, numbered in the order of their first event. Their aggregate
  // states are together, not behind a pointer per group: an event touches one place.
  struct OpenWindow {
    KeyIndex index;             // key -> group number
    std::deque<Stored> first;   // by group: its first event
    std::deque<AggState> aggs;  // by group, then slot
  };

  // `st` is the event without its row, which is `row`.
  void Accumulate(const Value& row, const Stored& st) {
    const Window& w = *sel_.window;
    EvalScope scope = RowScope(row, st.ts, st.analytic);
    Value key_tmp;
    auto key = EvalKeyRef(sel_.group_by, scope, key_tmp);
    if (!key.ok()) return Exception(key.status());
    const Value& group_key = **key;
    // Every input first, so that an error leaves no window half-updated. nullptr: FILTER said
    // no.
    static const Value kTrue = Value::Bool(true);
    for (size_t i = 0; i < aggregates_.size(); ++i) {
      const Expr& call = *aggregates_[i];
      agg_in_[i] = nullptr;
      if (call.filter) {
        auto pass = EvalCondition(*call.filter, scope);
        if (!pass.ok()) return Exception(pass.status());
        if (!*pass) continue;
      }
      if (call.args[0].kind == ExprKind::kStar) {
        agg_in_[i] = &kTrue;
        continue;
      }
      auto v = EvalRef(call.args[0], scope, agg_tmp_[i]);
      if (!v.ok()) return Exception(v.status());
      const Value& x = **v;
      if (IsNumeric(agg_kinds_[i]) && !x.is_null() && !x.is_number()) {
        return Exception(RuntimeError(
            call.pos, fmt::format("{}() needs numbers, found {}", call.name, TypeName(x.type()))));
      }
      agg_in_[i] = &x;
    }
    const int64_t len = w.length_ms;
    const int64_t hop = w.hop_ms > 0 ? w.hop_ms : len;
    for (int64_t start = (FloorDiv(st.ts - len, hop) + 1) * hop; start <= st.ts; start += hop) {
      OpenWindow& win = open_[start + len];
      const size_t n = aggregates_.size();
      std::optional<size_t> group = win.index.Find(group_key);
      if (!group) {
        group = win.first.size();
        win.index.Add(group_key, *group);
        win.first.push_back(Stored{row, st.ts, st.analytic, st.pass});
        win.aggs.resize(win.aggs.size() + n);
      }
      const size_t base = *group * n;
      for (size_t i = 0; i < n; ++i) {
        if (agg_in_[i] == nullptr) continue;
        Status s = Update(*aggregates_[i], agg_kinds_[i], win.aggs[base + i], *agg_in_[i]);
        if (!s.ok()) Exception(s);
      }
    }
  }

  static Status Update(const Expr& call, AggKind kind, AggState& a, const Value& v) {
    const std::string_view f = call.name;
    if (kind == AggKind::kCount) {
      if (call.args[0].kind == ExprKind::kStar || !v.is_null()) ++a.count;
      return Status::Ok();
    }
    if (kind == AggKind::kLastValue) {
      const bool ignore_null = call.args.size() < 2 || Truthy(call.args[1].value);
      if (!(ignore_null && v.is_null())) a.last = v;
      return Status::Ok();
    }
    if (v.is_null()) return Status::Ok();
    if (kind == AggKind::kMin || kind == AggKind::kMax) {
      if (a.best.is_null()) {
        a.best = v;
        return Status::Ok();
      }
      Cmp c = Compare(v, a.best);
      if (c == Cmp::kIncompatible) {
        return RuntimeError(call.pos, fmt::format("{}() cannot compare {} with {}", f,
                                                  TypeName(v.type()), TypeName(a.best.type())));
      }
      if ((kind == AggKind::kMin && c == Cmp::kLess) ||
          (kind == AggKind::kMax && c == Cmp::kGreater)) {
        a.best = v;
      }
      return Status::Ok();
    }
    ++a.count;
    a.sum.Add(v);
    if (!IsSpread(kind)) return Status::Ok();  // sum and avg need no variance
    const double x = v.number_value();
    const double d = x - a.mean;
    a.mean += d / static_cast<double>(a.count);
    a.m2 += d * (x - a.mean);
    return Status::Ok();
  }

  static Value Finish(AggKind kind, const AggState& a) {
    switch (kind) {
      case AggKind::kCount:
        return Value::Int(a.count);
      case AggKind::kLastValue:
        return a.last;
      case AggKind::kMin:
      case AggKind::kMax:
        return a.best;
      case AggKind::kSum:
        return a.sum.Get();
      default:
        break;
    }
    if (a.count == 0) return Value::Null();
    const auto n = static_cast<double>(a.count);
    if (kind == AggKind::kAvg) return Value::Float(a.sum.fsum / n);
    if (kind == AggKind::kVar) return Value::Float(a.m2 / n);
    if (kind == AggKind::kStddev) return Value::Float(std::sqrt(a.m2 / n));
    if (a.count < 2) return Value::Null();
    if (kind == AggKind::kVars) return Value::Float(a.m2 / (n - 1));
    return Value::Float(std::sqrt(a.m2 / (n - 1)));  // stddevs
  }

  void FireIncremental(const Window& w, std::vector<Emission>& out) {
    const size_t n = aggregates_.size();
    while (!open_.empty() && open_.begin()->first <= watermark_) {
      auto node = open_.extract(open_.begin());
      const int64_t end = node.key();
      const OpenWindow& win = node.mapped();
      const size_t count = win.first.size();
      std::vector<Value> aggs(count * n);  // by group, then slot
      std::vector<GroupOut> groups;
      groups.reserve(count);
      for (size_t k = 0; k < count; ++k) {
        const std::span<Value> mine(aggs.data() + k * n, n);
        for (size_t i = 0; i < n; ++i) mine[i] = Finish(agg_kinds_[i], win.aggs[k * n + i]);
        groups.push_back(GroupOut{&win.first[k], mine});
      }
      EmitGroups(groups, end - w.length_ms, end, out);
    }
  }

  // --- checkpoints ----------------------------------------------------------------------------
 public:
  using Json = nlohmann::json;

  static Json StoredJson(const Stored& st) {
    Json a = Json::array();
    for (const Value& v : st.analytic) a.push_back(ToNlohmann(v));
    return Json{{"row", ToNlohmann(st.row)}, {"ts", st.ts}, {"analytic", a}, {"pass", st.pass}};
  }
  static Stored StoredFrom(const Json& j) {
    Stored st;
    st.row = FromJson(j.at("row"));
    st.ts = j.at("ts").get<int64_t>();
    for (const Json& v : j.at("analytic")) st.analytic.push_back(FromJson(v));
    st.pass = j.at("pass").get<bool>();
    return st;
  }
  // n of a zscore(x, n) call; nullopt for other calls.
  static std::optional<size_t> ZscoreN(const Expr& call) {
    if (call.name != "zscore" || call.args.size() < 2 || !call.args[1].value.is_int()) {
      return std::nullopt;
    }
    return static_cast<size_t>(call.args[1].value.int_value());
  }

  static Json ValuesJson(const auto& values) {
    Json a = Json::array();
    for (const Value& v : values) a.push_back(ToNlohmann(v));
    return a;
  }

  std::string Snapshot() const {
    Json j;
    j["version"] = 1;
    j["rule"] = ToString(sel_);
    j["watermark"] = watermark_;
    j["clock"] = clock_;
    j["last_end"] = last_end_;
    j["count_total"] = count_total_;
    j["triggers"] = triggers_;
    Json buffer = Json::array();
    for (const Stored& st : buffer_) buffer.push_back(StoredJson(st));
    j["buffer"] = std::move(buffer);
    Json open = Json::array();
    for (const auto& entry : open_) {
      // Not a structured binding: lambdas cannot capture those before C++20's clang 16.
      const int64_t end = entry.first;
      const auto& win = entry.second;
      Json groups = Json::array();
      win.index.ForEach([&](const Value& key, size_t index) {
        Json aggs = Json::array();
        for (size_t i = 0; i < aggregates_.size(); ++i) {
          const AggState& a = win.aggs[index * aggregates_.size() + i];
          aggs.push_back({{"count", a.count},
                          {"sum", {a.sum.any, a.sum.any_float, a.sum.isum, a.sum.fsum}},
                          {"mean", a.mean},
                          {"m2", a.m2},
                          {"best", ToNlohmann(a.best)},
                          {"last", ToNlohmann(a.last)}});
        }
        groups.push_back({{"index", index},
                          {"key", ToNlohmann(key)},
                          {"first", StoredJson(win.first[index])},
                          {"aggs", aggs}});
      });
      open.push_back({{"end", end}, {"groups", std::move(groups)}});
    }
    j["open"] = std::move(open);
    Json analytic = Json::array();
    for (size_t i = 0; i < analytics_.size(); ++i) {
      // Every call as if it kept its own state, as equal calls' states would be.
      const Partitions& parts = analytic_state_[analytic_same_[i]];
      const std::optional<size_t> zscore_n = ZscoreN(*analytics_[i]);
      Json slot = Json::array();
      parts.index.ForEach([&](const Value& key, size_t index) {
        const AnalyticState& st = parts.states[index];
        std::vector<bool> has_prev = st.has_prev;
        Json history = st.history ? ValuesJson(*st.history) : Json::array();
        if (zscore_n) {
          ForEachOldestFirst(st, *zscore_n,
                             [&](double h) { history.push_back(ToNlohmann(Value::Float(h))); });
        }
        slot.push_back({{"key", ToNlohmann(key)},
                        {"last", ToNlohmann(st.last)},
                        {"history", std::move(history)},
                        {"prev", ValuesJson(st.prev)},
                        {"has_prev", has_prev},
                        {"any_float", st.any_float},
                        {"isum", st.isum},
                        {"fsum", st.fsum},
                        {"count", st.count},
                        {"min", ToNlohmann(st.min)},
                        {"max", ToNlohmann(st.max)},
                        {"mean", st.mean},
                        {"var", st.var}});
      });
      analytic.push_back(std::move(slot));
    }
    j["analytic"] = std::move(analytic);
    j["counters"] = {counters_.records_in, counters_.records_out, counters_.exceptions,
                     counters_.late, counters_.last_error};
    return j.dump();
  }

  Status Restore(std::string_view bytes) {
    Json j = Json::parse(bytes, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return Status(Code::kDataLoss, "the rule checkpoint is not valid JSON");
    }
    try {
      if (j.at("version").get<int>() != 1) {
        return Error(Code::kFailedPrecondition, "rule checkpoint version {} is not supported",
                     j.at("version").get<int>());
      }
      if (j.at("rule").get<std::string>() != ToString(sel_)) {
        return Status(Code::kFailedPrecondition,
                      "the rule checkpoint is of another rule (its SQL differs)");
      }
      if (j.at("analytic").size() != analytics_.size()) {
        return Status(Code::kDataLoss, "the rule checkpoint has the wrong analytic state");
      }
      std::deque<Stored> buffer;
      for (const Json& st : j.at("buffer")) buffer.push_back(StoredFrom(st));
      std::map<int64_t, OpenWindow> open;
      for (const Json& w : j.at("open")) {
        OpenWindow& win = open[w.at("end").get<int64_t>()];
        const Json& groups = w.at("groups");
        const size_t n = aggregates_.size();
        win.first.resize(groups.size());
        win.aggs.resize(groups.size() * n);
        for (const Json& g : groups) {
          const auto index = g.at("index").get<size_t>();
          if (index >= groups.size()) return Status(Code::kDataLoss, "bad group index");
          win.index.Add(FromJson(g.at("key")), index);
          win.first[index] = StoredFrom(g.at("first"));
          std::vector<AggState> aggs;
          for (const Json& a : g.at("aggs")) {
            AggState st;
            st.count = a.at("count").get<int64_t>();
            const Json& sum = a.at("sum");
            st.sum.any = sum.at(0).get<bool>();
            st.sum.any_float = sum.at(1).get<bool>();
            st.sum.isum = sum.at(2).get<int64_t>();
            st.sum.fsum = sum.at(3).get<double>();
            st.mean = a.at("mean").get<double>();
            st.m2 = a.at("m2").get<double>();
            st.best = FromJson(a.at("best"));
            st.last = FromJson(a.at("last"));
            aggs.push_back(std::move(st));
          }
          if (aggs.size() != n) {
            return Status(Code::kDataLoss, "the rule checkpoint has the wrong aggregate state");
          }
          std::move(aggs.begin(), aggs.end(),
                    win.aggs.begin() + static_cast<std::ptrdiff_t>(index * n));
        }
      }
      std::vector<Partitions> analytic(analytics_.size());
      for (size_t i = 0; i < analytics_.size(); ++i) {
        if (analytic_same_[i] != i) continue;  // the same state as an earlier call's
        const std::optional<size_t> zscore_n = ZscoreN(*analytics_[i]);
        for (const Json& e : j.at("analytic").at(i)) {
          AnalyticState st;
          st.last = FromJson(e.at("last"));
          for (const Json& v : e.at("history")) {
            Value h = FromJson(v);
            if (!zscore_n) {
              if (!st.history) st.history = std::make_unique<std::deque<Value>>();
              st.history->push_back(std::move(h));
            } else {
              // NaN and infinities were written as null.
              st.ring.push_back(h.is_number() ? h.number_value()
                                              : std::numeric_limits<double>::quiet_NaN());
            }
          }
          if (zscore_n && st.ring.size() > *zscore_n) {
            st.ring.erase(st.ring.begin(), st.ring.end() - static_cast<std::ptrdiff_t>(*zscore_n));
          }
          for (const Json& v : e.at("prev")) st.prev.push_back(FromJson(v));
          st.has_prev = e.at("has_prev").get<std::vector<bool>>();
          st.any_float = e.at("any_float").get<bool>();
          st.isum = e.at("isum").get<int64_t>();
          st.fsum = e.at("fsum").get<double>();
          st.count = e.at("count").get<int64_t>();
          st.min = FromJson(e.at("min"));
          st.max = FromJson(e.at("max"));
          st.mean = e.at("mean").get<double>();
          st.var = e.at("var").get<double>();
          Partitions& parts = analytic[i];
          if (parts.index.Add(FromJson(e.at("key")), parts.states.size())) {
            parts.states.push_back(std::move(st));
          }
        }
      }
      // Times in range, so that window arithmetic cannot overflow on a forged checkpoint.
      auto in_range = [](int64_t t) { return t >= -kMaxTime && t <= kMaxTime; };
      auto time_or_never = [&](int64_t t) { return t == kNever || in_range(t); };
      bool ok = time_or_never(j.at("watermark").get<int64_t>()) &&
                time_or_never(j.at("clock").get<int64_t>()) &&
                time_or_never(j.at("last_end").get<int64_t>());
      for (const Stored& st : buffer) ok = ok && in_range(st.ts);
      for (const auto& [end, win] : open) {
        ok = ok && in_range(end);
        for (const Stored& first : win.first) ok = ok && in_range(first.ts);
      }
      for (const Json& t : j.at("triggers")) ok = ok && in_range(t.get<int64_t>());
      if (!ok) return Status(Code::kDataLoss, "the rule checkpoint has a time out of range");
      RuleCounters counters;
      const Json& c = j.at("counters");
      counters.records_in = c.at(0).get<uint64_t>();
      counters.records_out = c.at(1).get<uint64_t>();
      counters.exceptions = c.at(2).get<uint64_t>();
      counters.late = c.at(3).get<uint64_t>();
      counters.last_error = c.at(4).get<std::string>();
      // Everything parsed: commit.
      watermark_ = j.at("watermark").get<int64_t>();
      clock_ = j.at("clock").get<int64_t>();
      last_end_ = j.at("last_end").get<int64_t>();
      count_total_ = j.at("count_total").get<uint64_t>();
      triggers_ = j.at("triggers").get<std::deque<int64_t>>();
      buffer_ = std::move(buffer);
      open_ = std::move(open);
      analytic_state_ = std::move(analytic);
      counters_ = std::move(counters);
    } catch (const nlohmann::json::exception& e) {
      return Error(Code::kDataLoss, "the rule checkpoint is damaged: {}", e.what());
    }
    return Status::Ok();
  }

 private:
  Select sel_;
  CreateStream stream_;
  RuleOptions options_;
  RuleCounters counters_;
  bool event_time_ = false;
  int64_t tolerance_ = 0;
  std::unordered_map<const Expr*, size_t> slots_;
  std::vector<std::pair<const Expr*, size_t>> slot_list_;  // slots_ sorted by address
  std::vector<const Expr*> aggregates_;
  std::vector<const Expr*> analytics_;
  // By analytic slot: the slot whose result it takes (an equal call before it), or its own.
  // Only the calls that are their own keep state.
  std::vector<size_t> analytic_same_;
  std::vector<AnalyticKind> analytic_kinds_;  // by analytic slot
  std::vector<std::string> names_;  // by field: alias or default name, empty: kuiper_field_N
  std::vector<Partitions> analytic_state_;  // by analytic slot
  int64_t watermark_ = kNever;
  int64_t clock_ = kNever;
  std::deque<Stored> buffer_;           // time windows: by timestamp; count windows: arrival order
  std::deque<int64_t> triggers_;        // sliding: pending trigger times, sorted
  int64_t last_end_ = kNever;           // tumbling, hopping: end of the last window emitted
  uint64_t count_total_ = 0;            // count: events that entered
  bool incremental_ = false;            // tumbling, hopping: aggregate state instead of events
  std::map<int64_t, OpenWindow> open_;  // incremental: open windows by end
  bool star_only_ = false;              // the projection is `*` alone
  // Column binding: the names (sorted) with the declared type of those Coerce() may convert,
  // the column nodes by address with their name's index, and the current event's values.
  std::vector<std::string> bound_names_;
  std::vector<uint64_t> bound_prefixes_;
  std::vector<std::optional<TypeKind>> bound_kinds_;
  std::vector<std::pair<const Expr*, size_t>> bound_nodes_;
  std::vector<const Value*> bound_values_;
  bool coercible_ = false;  // a bound column is declared FLOAT, BIGINT or DATETIME
  BoundColumns bound_;
  // Reused from event to event, so that they allocate once.
  std::vector<Value> analytic_scratch_;
  std::vector<Value> arg_tmp_;  // analytic arguments: computed values, and pointers to all
  std::vector<const Value*> arg_ptr_;
  // Incremental aggregation, by aggregate slot: the kind, and the current event's input (a
  // pointer into the event or agg_tmp_; nullptr: none).
  std::vector<AggKind> agg_kinds_;
  std::vector<const Value*> agg_in_;
  std::vector<Value> agg_tmp_;
};

Result<std::unique_ptr<Rule>> Rule::Create(const Select& select, const CreateStream& stream,
                                           const RuleOptions& options) {
  if (select.stream != stream.name) {
    return Error(Code::kInvalidArgument, "the rule reads stream {}, not {}", select.stream,
                 stream.name);
  }
  auto impl = std::make_unique<Impl>(select, stream, options);
  impl->Init();
  return std::unique_ptr<Rule>(new Rule(std::move(impl)));
}

Rule::Rule(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Rule::~Rule() = default;

std::vector<Emission> Rule::Push(const Row& row, int64_t timestamp_ms) {
  return impl_->Push(row, timestamp_ms);
}
std::vector<Emission> Rule::AdvanceTo(int64_t time_ms) { return impl_->AdvanceTo(time_ms); }
const RuleCounters& Rule::counters() const { return impl_->counters(); }
std::string Rule::Snapshot() const { return impl_->Snapshot(); }
Status Rule::Restore(std::string_view bytes) { return impl_->Restore(bytes); }
int64_t Rule::watermark() const { return impl_->watermark(); }

ParseResult<TestOutput> RunTest(const std::vector<std::string>& create_streams,
                                const std::string& sql,
                                const std::map<std::string, std::vector<Row>>& input,
                                const RuleOptions& options) {
  std::map<std::string, CreateStream> streams;
  for (const std::string& text : create_streams) {
    ParseResult<CreateStream> cs = ParseCreateStream(text);
    if (!cs.ok()) return cs.error();
    std::string name = cs.value().name;
    if (!streams.emplace(name, std::move(cs).value()).second) {
      return ParseError{0, 0, fmt::format("stream {} is declared twice", name)};
    }
  }
  ParseResult<Select> select = ParseSelect(sql);
  if (!select.ok()) return select.error();
  const Select& sel = select.value();
  auto it = streams.find(sel.stream);
  if (it == streams.end()) {
    return ParseError{
        sel.stream_pos.line, sel.stream_pos.column,
        fmt::format("unknown stream {}: declare it with CREATE STREAM", QuoteName(sel.stream))};
  }
  auto rule = Rule::Create(sel, it->second, options);
  if (!rule.ok()) return ParseError{0, 0, rule.status().message()};
  const std::string ts_column =
      it->second.typed.timestamp.empty() ? std::string("ts") : it->second.typed.timestamp;
  TestOutput out;
  int64_t clock = 0;
  auto append = [&](std::vector<Emission> es) {
    for (Emission& e : es) out.outputs.push_back(std::move(e));
  };
  const bool event_time = !it->second.typed.timestamp.empty();
  if (auto rows = input.find(sel.stream); rows != input.end()) {
    for (const Row& row : rows->second) {
      int64_t ts = clock;
      if (const Value* v = row.Find(ts_column); v != nullptr) {
        if (auto ms = DatetimeMillis(*v)) ts = *ms;
      }
      clock = std::max(clock, ts);
      append((*rule)->AdvanceTo(clock));
      append((*rule)->Push(row, event_time ? ts : clock));
    }
  }
  append((*rule)->AdvanceTo(clock + 1000));
  out.counters = (*rule)->counters();
  return out;
}

}  // namespace verge::rules
