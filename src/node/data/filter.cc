#include "node/data/filter.h"

#include <algorithm>
#include <cmath>

namespace verge::data {

namespace {

void MakeKey(std::string& key, const std::string& device, const std::string& metric) {
  key.assign(device);
  key.push_back('\0');
  key.append(metric);
}

bool SameSpec(const FilterSpec& a, const FilterSpec& b) {
  return a.deadband_abs == b.deadband_abs && a.deadband_pct == b.deadband_pct &&
         a.sample_every == b.sample_every && a.max_silence_ns == b.max_silence_ns &&
         a.swinging_door == b.swinging_door && a.min == b.min && a.max == b.max;
}

}  // namespace

Status ValidateFilter(const FilterSpec& f) {
  std::vector<std::string> errors;
  if (!(f.deadband_abs >= 0) || !std::isfinite(f.deadband_abs))
    errors.push_back("deadbandAbs must be a finite number >= 0");
  if (!(f.deadband_pct >= 0 && f.deadband_pct <= 100))
    errors.push_back("deadbandPct must be between 0 and 100");
  if (f.deadband_pct > 0 && (!f.min || !f.max || !(*f.max > *f.min)))
    errors.push_back("deadbandPct needs the metric's min and max (max > min)");
  if (f.deadband_abs > 0 && f.deadband_pct > 0)
    errors.push_back("give deadbandAbs or deadbandPct, not both");
  if (f.max_silence_ns < 0) errors.push_back("maxSilence must not be negative");
  if (!(f.swinging_door >= 0) || !std::isfinite(f.swinging_door))
    errors.push_back("swingingDoor must be a finite number >= 0");
  if (errors.empty()) return Status::Ok();
  std::string msg;
  for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + e;
  return Error(Code::kInvalidArgument, "{}", msg);
}

void UplinkFilters::Set(
    std::vector<std::pair<std::pair<std::string, std::string>, FilterSpec>> specs) {
  std::unordered_map<std::string, State> next;
  for (auto& [k, spec] : specs) {
    MakeKey(key_, k.first, k.second);
    State s;
    if (auto it = specs_.find(key_); it != specs_.end() && SameSpec(it->second.spec, spec)) {
      s = std::move(it->second);
    }
    s.spec = spec;
    next.insert_or_assign(key_, std::move(s));
  }
  specs_ = std::move(next);
}

void UplinkFilters::Send(State& s, const Reading& r, std::vector<Reading>& out) {
  out.push_back(r);
  s.sent_any = true;
  s.last_value = r.value;
  s.last_ts = r.ts_ns;
  ++passed_;
}

void UplinkFilters::Apply(const Reading& r, std::vector<Reading>& out) {
  if (specs_.empty()) {
    out.push_back(r);
    ++passed_;
    return;
  }
  MakeKey(key_, r.device, r.metric);
  auto it = specs_.find(key_);
  if (it == specs_.end()) {
    out.push_back(r);
    ++passed_;
    return;
  }
  State& s = it->second;
  const FilterSpec& f = s.spec;
  ++s.seen;
  bool silent_too_long =
      s.sent_any && f.max_silence_ns > 0 && r.ts_ns - s.last_ts >= f.max_silence_ns;

  if (f.swinging_door > 0) {
    if (!s.sent_any || silent_too_long) {
      Send(s, r, out);
      s.arch_ts = r.ts_ns;
      s.arch_value = r.value;
      s.has_held = false;
      s.door_open = false;
      return;
    }
    double dt = static_cast<double>(r.ts_ns - s.arch_ts);
    if (dt <= 0) {  // out of order for the door: keep it simple, send it as it is
      Send(s, r, out);
      return;
    }
    double up = (r.value - (s.arch_value + f.swinging_door)) / dt;
    double low = (r.value - (s.arch_value - f.swinging_door)) / dt;
    if (!s.door_open) {
      s.slope_up = up;
      s.slope_low = low;
      s.door_open = true;
    } else {
      s.slope_up = std::max(s.slope_up, up);
      s.slope_low = std::min(s.slope_low, low);
    }
    if (s.slope_up > s.slope_low && s.has_held) {
      // The corridor closed: the held point ends the segment and starts the next one. Its value
      // is put on the line that stays within the deviation of every reading since the last
      // point sent (it moves by at most the deviation itself), so the sent line is a true
      // bound, which the classic "send the raw held value" is not. Counted as suppressed while
      // held.
      --suppressed_;
      double dth = static_cast<double>(s.held.ts_ns - s.arch_ts);
      double slope = (s.held.value - s.arch_value) / dth;
      slope = std::clamp(slope, s.held_up, s.held_low);
      s.held.value = s.arch_value + slope * dth;
      Send(s, s.held, out);
      s.arch_ts = s.held.ts_ns;
      s.arch_value = s.held.value;
      double dt2 = static_cast<double>(r.ts_ns - s.arch_ts);
      s.slope_up = (r.value - (s.arch_value + f.swinging_door)) / dt2;
      s.slope_low = (r.value - (s.arch_value - f.swinging_door)) / dt2;
    } else {
      ++suppressed_;
    }
    s.held = r;
    s.has_held = true;
    s.held_up = s.slope_up;
    s.held_low = s.slope_low;
    return;
  }

  bool pass = !s.sent_any || silent_too_long;
  if (!pass) {
    bool ok = true;
    double band = f.deadband_abs;
    if (f.deadband_pct > 0 && f.min && f.max) band = (*f.max - *f.min) * f.deadband_pct / 100.0;
    if (band > 0 && !(std::fabs(r.value - s.last_value) > band)) ok = false;
    if (f.sample_every > 1 && (s.seen - 1) % f.sample_every != 0) ok = false;
    pass = ok;
  }
  if (pass) {
    Send(s, r, out);
  } else {
    ++suppressed_;
  }
}

}  // namespace verge::data
