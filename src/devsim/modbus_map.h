// The register map that `verge-devsim modbus` serves, identical for every simulated device
// (each device is one unit id). Addresses are fixed so that tests, benchmarks and the demo
// can declare the device from `verge-devsim modbus --print-map`. The map covers every
// register type in every byte/word order, in both register kinds:
//
//   input registers (read-only measurements)
//     0  temperature  int16    AB    x0.01     [-40, 125] degC
//     1  humidity     uint16   AB    x0.01     [0, 100] %
//     2  pressure     uint16   BA    x0.1      [900, 1100] hPa
//     3  vibration    int16    BA    x0.001    [-20, 20] g
//    10  flow         float32  ABCD            [0, 500] m3/h
//    12  power        float32  CDAB            [0, 50] kW
//    14  voltage      float32  BADC            [200, 250] V
//    16  current      float32  DCBA            [0, 100] A
//    20  position     int32    ABCD  x0.001    [-1000, 1000] mm
//    22  torque       int32    CDAB  x0.001    [-500, 500] Nm
//    24  tilt         int32    BADC  x0.0001   [-90, 90] deg
//    26  strain       int32    DCBA  x0.001    [-2000, 2000] ue
//    30  speed        uint32   ABCD  x0.001    [0, 3000] rpm
//    32  level        uint32   CDAB  x0.0001   [0, 20] m
//    34  weight       uint32   BADC  x0.01     [0, 50000] kg
//    36  light        uint32   DCBA  x0.01     [0, 100000] lux
//   holding registers (setpoints and states; writes are accepted but overwritten)
//     0  setpoint     uint16   AB    x0.01 -40 [10, 40] degC
//     1  valve        uint16   BA    x0.1      [0, 100] %
//     2  frequency    float32  ABCD            [49, 51] Hz
//     4  co2          uint32   DCBA  x0.01     [300, 5000] ppm
// (AB/ABCD: big byte and word order; BA: bytes swapped; CDAB: words swapped; BADC: bytes
// swapped; DCBA: both.) Each table has kMapTableSize registers: reading past it gets an
// illegal-data-address exception, like a real device; gaps inside it read as zeros.
//
// Thread-safety: constant data.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "devsim/signal.h"
#include "node/modbus/registers.h"

namespace verge::devsim {

inline constexpr int kMapTableSize = 64;

struct SimRegister {
  modbus::RegisterSpec reg;
  SignalSpec signal;  // span in engineering units, i.e. after scale and offset
};

const std::vector<SimRegister>& ModbusMap();

// {"devices": [{"unit_id": 1, "registers": [{"metric", "unit", "address", "kind", "type",
// "byte_order", "word_order", "scale", "offset", "min", "max"}, ...]}, ...]}
// for unit ids 1..devices.
nlohmann::json ModbusMapJson(int devices);

}  // namespace verge::devsim
