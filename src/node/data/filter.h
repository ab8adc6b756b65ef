// UplinkFilters: which accepted readings of a metric are sent to the cloud. All filters are
// opt-in per metric; a metric without one sends every reading. Every reading is still kept in
// the node's local time-series, whatever the filter decides.
//   deadband       send when the value moved more than a band (absolute, or % of the span)
//                  since the last value sent;
//   sample_every   send one reading in N;
//   swinging door  send only the points of a piecewise-linear line that stays within the
//                  deviation of every reading; a point's value is moved onto that line (by at
//                  most the deviation), and the last one is sent when the next reading closes
//                  the corridor, or at max_silence;
//   max_silence    send anyway when nothing was sent for this long.
// Filter state lives in memory: after a restart the first reading of each series is sent.
//
// Thread-safety: not thread-safe; the pipeline thread owns it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "node/data/reading.h"

namespace verge::data {

struct FilterSpec {
  double deadband_abs = 0;
  double deadband_pct = 0;  // of (max - min)
  uint32_t sample_every = 0;
  int64_t max_silence_ns = 0;
  double swinging_door = 0;
  std::optional<double> min, max;
};

Status ValidateFilter(const FilterSpec& f);

class UplinkFilters {
 public:
  // Replaces every spec (key: device, metric). Series whose spec is unchanged keep their state.
  void Set(std::vector<std::pair<std::pair<std::string, std::string>, FilterSpec>> specs);
  bool empty() const { return specs_.empty(); }

  // Appends to `out` what `r` makes the filter send (nothing, `r`, or an earlier held reading).
  void Apply(const Reading& r, std::vector<Reading>& out);

  uint64_t passed() const { return passed_; }
  uint64_t suppressed() const { return suppressed_; }

 private:
  struct State {
    FilterSpec spec;
    bool sent_any = false;
    double last_value = 0;
    int64_t last_ts = 0;
    uint64_t seen = 0;
    // Swinging door: archived point, the held (latest) point and the door slopes.
    bool has_held = false;
    Reading held;
    int64_t arch_ts = 0;
    double arch_value = 0;
    double slope_up = 0, slope_low = 0;
    double held_up = 0, held_low = 0;  // the slopes when the held point arrived
    bool door_open = false;
  };
  void Send(State& s, const Reading& r, std::vector<Reading>& out);

  std::unordered_map<std::string, State> specs_;
  std::string key_;  // reused lookup buffer
  uint64_t passed_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace verge::data
