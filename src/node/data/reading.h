// Reading: one measured value of one device's metric at one instant. Every ingest path
// (HTTP, MQTT, Modbus) produces these; cleaning, the local time-series, rules and the uplink
// consume them.
#pragma once

#include <cstdint>
#include <string>

namespace verge::data {

struct Reading {
  std::string device;
  std::string metric;
  int64_t ts_ns = 0;  // Unix epoch, nanoseconds, UTC
  double value = 0;

  bool operator==(const Reading&) const = default;
};

}  // namespace verge::data
