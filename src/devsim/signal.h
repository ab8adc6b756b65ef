// Simulated sensor signals for verge-devsim: values that look like a real process (a level
// that wanders slowly and is pulled back to its base, white noise, occasional steps, rare
// spikes, an optional daily-like sine compressed to minutes) so that deadbands, windows and
// anomaly rules downstream have something realistic to chew on.
//
// Every value stays inside the declared span [min, max], so a consumer can state a deadband
// as a percentage of the span. A Signal is deterministic: the same spec, seed and sequence of
// time steps give the same values on every run and machine (random numbers come from
// std::mt19937_64 through our own uniform/Gaussian transforms, not the library's
// distributions, whose output differs between standard libraries).
//
// Thread-safety: a Signal is a plain value, used by one thread at a time.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "common/status.h"

namespace verge::devsim {

struct SignalSpec {
  std::string metric;
  std::string unit;  // informational, e.g. "degC"
  double min = 0;    // the span: values never leave [min, max]
  double max = 100;
  double base = 50;         // the level the signal starts at and is pulled back to
  double noise = 0;         // standard deviation of the white noise on each value
  double drift = 0;         // random walk of the level: standard deviation per sqrt(second)
  double reversion = 0.01;  // fraction of the distance to base recovered per second
  double step_rate = 0;     // steps per second (on average)
  double step_size = 0;     // a step moves the level by +/- this much
  double spike_rate = 0;    // spikes per second (on average)
  double spike_size = 0;    // a spike adds +/- this much to a single value
  double sine_amplitude = 0;
  double sine_period_s = 0;  // 0: no sine
};

// Checks min < max, base within the span, non-negative sizes and rates, a positive period
// when there is a sine; reports every problem at once.
Status Validate(const SignalSpec& spec);

// A spec for a metric name: the known ones (temperature, humidity, pressure, co2, voltage,
// current, power, flow, vibration, level, speed, ...; aliases such as "temp" and "hum") get
// realistic spans and behaviour; any other name gets a generic signal on [0, 100].
SignalSpec PresetFor(std::string_view metric);

// A seed for one signal from a run's seed and a label such as "device-3/temperature", so
// that signals differ from each other but are all fixed by the run's seed. Stable across
// platforms (FNV-1a and splitmix64, not std::hash).
uint64_t DeriveSeed(uint64_t seed, std::string_view label);

class Signal {
 public:
  // REQUIRES: Validate(spec).ok()
  Signal(SignalSpec spec, uint64_t seed);

  // Moves time forward by `dt_s` seconds (>= 0; negative counts as 0) and returns the value
  // at the new time, within [spec.min, spec.max].
  double Next(double dt_s);

  const SignalSpec& spec() const { return spec_; }
  double elapsed_s() const { return t_; }

 private:
  double Uniform();   // [0, 1)
  double Gaussian();  // standard normal
  bool Happens(double rate, double dt_s);

  SignalSpec spec_;
  std::mt19937_64 rng_;
  double t_ = 0;
  double level_;
  double phase_;  // so that signals with the same period do not move in lockstep
};

}  // namespace verge::devsim
