#include "devsim/signal.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

namespace verge::devsim {
namespace {

struct Preset {
  std::string_view name;
  SignalSpec spec;
};

// Spans are what real instruments of the kind report; the rest is tuned so that a few
// minutes of data at 1 Hz show noise, drift, a sine-shaped "day", and now and then a step
// or a spike.
SignalSpec Make(std::string unit, double min, double max, double base, double noise, double drift,
                double reversion, double step_every_s, double step_size, double spike_every_s,
                double spike_size, double sine_amplitude, double sine_period_s) {
  SignalSpec s;
  s.unit = std::move(unit);
  s.min = min;
  s.max = max;
  s.base = base;
  s.noise = noise;
  s.drift = drift;
  s.reversion = reversion;
  s.step_rate = step_every_s > 0 ? 1 / step_every_s : 0;
  s.step_size = step_size;
  s.spike_rate = spike_every_s > 0 ? 1 / spike_every_s : 0;
  s.spike_size = spike_size;
  s.sine_amplitude = sine_amplitude;
  s.sine_period_s = sine_period_s;
  return s;
}

const std::vector<Preset>& Presets() {
  static const std::vector<Preset> presets = {
      {"temperature", Make("degC", -40, 125, 21, 0.05, 0.05, 0.005, 900, 1.5, 1800, 15, 3, 600)},
      {"humidity", Make("%", 0, 100, 45, 0.2, 0.1, 0.005, 900, 3, 1800, 20, 8, 600)},
      {"pressure", Make("hPa", 900, 1100, 1013, 0.1, 0.05, 0.002, 1200, 2, 3600, 20, 2, 600)},
      {"co2", Make("ppm", 300, 5000, 600, 5, 3, 0.005, 600, 150, 1800, 800, 100, 600)},
      {"voltage", Make("V", 200, 250, 230, 0.3, 0.1, 0.02, 600, 3, 900, 12, 1.5, 300)},
      {"current", Make("A", 0, 100, 12, 0.2, 0.1, 0.01, 300, 5, 900, 30, 4, 600)},
      {"power", Make("kW", 0, 50, 8, 0.1, 0.05, 0.01, 300, 3, 900, 15, 2, 600)},
      {"flow", Make("m3/h", 0, 500, 120, 1, 0.5, 0.01, 300, 25, 900, 100, 20, 600)},
      {"vibration", Make("g", -20, 20, 0, 1.5, 0.05, 0.05, 0, 0, 300, 12, 0, 0)},
      {"level", Make("m", 0, 20, 8, 0.01, 0.02, 0.002, 600, 1, 3600, 4, 2, 1200)},
      {"speed", Make("rpm", 0, 3000, 1480, 3, 2, 0.02, 300, 200, 1800, 600, 0, 0)},
      {"position", Make("mm", -1000, 1000, 0, 0.5, 5, 0.005, 120, 150, 1800, 300, 200, 300)},
      {"torque", Make("Nm", -500, 500, 120, 2, 1, 0.01, 300, 40, 900, 150, 30, 300)},
      {"tilt", Make("deg", -90, 90, 0, 0.05, 0.05, 0.01, 1800, 5, 3600, 20, 1, 600)},
      {"strain", Make("ue", -2000, 2000, 150, 5, 3, 0.01, 600, 200, 900, 800, 100, 600)},
      {"weight", Make("kg", 0, 50000, 12000, 5, 20, 0.002, 120, 1500, 1800, 5000, 0, 0)},
      {"light", Make("lux", 0, 100000, 20000, 100, 50, 0.005, 600, 5000, 3600, 30000, 18000, 600)},
      {"setpoint", Make("degC", 10, 40, 22, 0, 0, 0.002, 300, 1, 0, 0, 0, 0)},
      {"valve", Make("%", 0, 100, 40, 0.1, 0.2, 0.01, 120, 10, 0, 0, 10, 300)},
      {"frequency", Make("Hz", 49, 51, 50, 0.005, 0.005, 0.05, 1800, 0.1, 3600, 0.5, 0.03, 300)},
  };
  return presets;
}

constexpr std::pair<std::string_view, std::string_view> kAliases[] = {
    {"temp", "temperature"}, {"hum", "humidity"}, {"rh", "humidity"},
    {"press", "pressure"},   {"rpm", "speed"},    {"freq", "frequency"}};

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

Status Validate(const SignalSpec& s) {
  std::vector<std::string> errors;
  std::string what = s.metric.empty() ? "signal" : fmt::format("signal \"{}\"", s.metric);
  if (!std::isfinite(s.min) || !std::isfinite(s.max) || !(s.min < s.max)) {
    errors.push_back(
        fmt::format("{}: span [{}, {}] must be finite with min < max", what, s.min, s.max));
  } else if (!(s.base >= s.min && s.base <= s.max)) {
    errors.push_back(fmt::format("{}: base {} is outside [{}, {}]", what, s.base, s.min, s.max));
  }
  for (auto [name, v] : {std::pair{"noise", s.noise},
                         {"drift", s.drift},
                         {"reversion", s.reversion},
                         {"step_rate", s.step_rate},
                         {"step_size", s.step_size},
                         {"spike_rate", s.spike_rate},
                         {"spike_size", s.spike_size},
                         {"sine_amplitude", s.sine_amplitude},
                         {"sine_period_s", s.sine_period_s}}) {
    if (!std::isfinite(v) || v < 0) {
      errors.push_back(fmt::format("{}: {} {} must be finite and >= 0", what, name, v));
    }
  }
  if (errors.empty()) return Status::Ok();
  std::string msg;
  for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + e;
  return Status(Code::kInvalidArgument, msg);
}

SignalSpec PresetFor(std::string_view metric) {
  std::string_view key = metric;
  for (auto [alias, name] : kAliases) {
    if (metric == alias) key = name;
  }
  SignalSpec spec = Make("", 0, 100, 50, 0.5, 0.2, 0.01, 600, 5, 1800, 20, 5, 600);
  for (const Preset& p : Presets()) {
    if (p.name == key) spec = p.spec;
  }
  spec.metric = std::string(metric);
  return spec;
}

uint64_t DeriveSeed(uint64_t seed, std::string_view label) {
  uint64_t h = 0xCBF29CE484222325ULL;  // FNV-1a
  for (unsigned char c : label) {
    h ^= c;
    h *= 0x100000001B3ULL;
  }
  return SplitMix64(seed ^ SplitMix64(h));
}

Signal::Signal(SignalSpec spec, uint64_t seed)
    : spec_(std::move(spec)), rng_(seed), level_(spec_.base) {
  phase_ = 2 * std::numbers::pi * Uniform();
}

double Signal::Uniform() {
  // The top 53 bits of one draw: exactly representable, uniform on [0, 1).
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

double Signal::Gaussian() {
  // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
  double u1 = 1 - Uniform();
  double u2 = Uniform();
  return std::sqrt(-2 * std::log(u1)) * std::cos(2 * std::numbers::pi * u2);
}

bool Signal::Happens(double rate, double dt_s) {
  if (rate <= 0 || dt_s <= 0) return false;
  return Uniform() < 1 - std::exp(-rate * dt_s);
}

double Signal::Next(double dt_s) {
  double dt = dt_s > 0 ? dt_s : 0;  // also maps NaN to 0
  t_ += dt;
  const SignalSpec& s = spec_;
  if (dt > 0) {
    // Exact decay for any step length, so a long step cannot overshoot the base.
    level_ += (s.base - level_) * (1 - std::exp(-s.reversion * dt));
    if (s.drift > 0) level_ += s.drift * std::sqrt(dt) * Gaussian();
    if (Happens(s.step_rate, dt)) level_ += (Uniform() < 0.5 ? -1 : 1) * s.step_size;
    level_ = std::clamp(level_, s.min, s.max);
  }
  double v = level_;
  if (s.noise > 0) v += s.noise * Gaussian();
  if (s.sine_period_s > 0 && s.sine_amplitude > 0) {
    v += s.sine_amplitude * std::sin(2 * std::numbers::pi * t_ / s.sine_period_s + phase_);
  }
  if (Happens(s.spike_rate, dt)) v += (Uniform() < 0.5 ? -1 : 1) * s.spike_size;
  return std::clamp(v, s.min, s.max);
}

}  // namespace verge::devsim
