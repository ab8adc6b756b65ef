#include "common/reading_batch.h"

#include <bit>
#include <cmath>
#include <optional>

namespace verge {

Status SeriesTimestamps(const v1::ReadingBatch& batch, int i, std::vector<int64_t>& ts) {
  const auto& s = batch.series(i);
  if (s.device() >= static_cast<uint32_t>(batch.devices_size())) {
    return Error(Code::kInvalidArgument, "series {}: device index {} out of range ({} devices)", i,
                 s.device(), batch.devices_size());
  }
  if (s.metric() >= static_cast<uint32_t>(batch.metrics_size())) {
    return Error(Code::kInvalidArgument, "series {}: metric index {} out of range ({} metrics)", i,
                 s.metric(), batch.metrics_size());
  }
  if (s.ts_delta_ns_size() != s.values_size() + s.decimal_values_size()) {
    return Error(Code::kInvalidArgument, "series {}: {} timestamps but {} values", i,
                 s.ts_delta_ns_size(), s.values_size() + s.decimal_values_size());
  }
  ts.clear();
  ts.reserve(static_cast<size_t>(s.ts_delta_ns_size()));
  int64_t t = batch.base_ts_ns();
  for (int k = 0; k < s.ts_delta_ns_size(); ++k) {
    if (__builtin_add_overflow(t, s.ts_delta_ns(k), &t)) {
      return Error(Code::kInvalidArgument, "series {}: timestamp {} overflows", i, k);
    }
    ts.push_back(t);
  }
  return Status::Ok();
}

namespace {

constexpr uint32_t kMaxDecimalExp = 9;
constexpr double kPow10[kMaxDecimalExp + 1] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
constexpr int64_t kMaxMantissa = int64_t{1} << 53;  // every integer up to it is a double

bool SameDouble(double a, double b) {
  return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
}

// The value `m` / 10^e stands for. Both are exact doubles and IEEE division rounds correctly,
// so the encoder and every decoder get the same double.
double Decimal(int64_t m, uint32_t e) { return static_cast<double>(m) / kPow10[e]; }

// The mantissa of v at exponent e, if v / 1 == m / 10^e exactly.
std::optional<int64_t> MantissaAt(double v, uint32_t e) {
  double scaled = v * kPow10[e];
  if (!(std::fabs(scaled) <= static_cast<double>(kMaxMantissa))) return std::nullopt;
  auto m = static_cast<int64_t>(std::llround(scaled));
  if (!SameDouble(Decimal(m, e), v)) return std::nullopt;
  return m;
}

}  // namespace

Status SeriesValues(const v1::ReadingBatch& batch, int i, std::vector<double>& values) {
  const auto& s = batch.series(i);
  values.clear();
  if (s.decimal_values_size() == 0) {
    values.assign(s.values().begin(), s.values().end());
    return Status::Ok();
  }
  if (s.values_size() != 0) {
    return Error(Code::kInvalidArgument, "series {}: both double and decimal values", i);
  }
  if (s.decimal_exp() > kMaxDecimalExp) {
    return Error(Code::kInvalidArgument, "series {}: decimal exponent {} is over {}", i,
                 s.decimal_exp(), kMaxDecimalExp);
  }
  values.reserve(static_cast<size_t>(s.decimal_values_size()));
  for (int64_t m : s.decimal_values()) {
    if (m > kMaxMantissa || m < -kMaxMantissa) {
      return Error(Code::kInvalidArgument, "series {}: decimal value {} is out of range", i, m);
    }
    values.push_back(Decimal(m, s.decimal_exp()));
  }
  return Status::Ok();
}

void SetSeriesValues(std::span<const double> values, v1::ReadingBatch::Series& s) {
  s.clear_values();
  s.clear_decimal_values();
  s.set_decimal_exp(0);
  // The smallest exponent that fits every value; then every mantissa at it.
  uint32_t exp = 0;
  bool decimal = !values.empty();
  for (double v : values) {
    while (exp <= kMaxDecimalExp && !MantissaAt(v, exp)) ++exp;
    if (exp > kMaxDecimalExp) {
      decimal = false;
      break;
    }
  }
  if (decimal) {
    s.mutable_decimal_values()->Reserve(static_cast<int>(values.size()));
    for (double v : values) {
      auto m = MantissaAt(v, exp);
      if (!m) {
        decimal = false;
        break;
      }
      s.add_decimal_values(*m);
    }
  }
  if (decimal) {
    s.set_decimal_exp(exp);
    return;
  }
  s.clear_decimal_values();
  s.mutable_values()->Assign(values.begin(), values.end());
}

}  // namespace verge
