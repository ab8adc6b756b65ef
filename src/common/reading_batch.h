// The one reading of a v1::ReadingBatch's delta-coded series, shared by the node (its journal
// and uplink batches) and the cloud (batches from nodes), so that both check a batch the same
// way.
// Thread-safety: free functions, thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "verge/v1/link.pb.h"

namespace verge {

// Checks series `i` of `batch` (device and metric indices in range, as many timestamps as
// values) and writes its absolute timestamps into `ts`. Deltas add to base_ts_ns, but a sum
// that leaves int64 is refused. kInvalidArgument says what is wrong; `ts` is then unspecified.
Status SeriesTimestamps(const v1::ReadingBatch& batch, int i, std::vector<int64_t>& ts);

// Writes series `i`'s values into `values`, from doubles or decimals. kInvalidArgument for
// decimals out of range, or both kinds in one series.
Status SeriesValues(const v1::ReadingBatch& batch, int i, std::vector<double>& values);

// Sets series `s`'s values: as decimals if every one of them has an exact short decimal form
// (see ReadingBatch.Series.decimal_values), else as doubles.
void SetSeriesValues(std::span<const double> values, v1::ReadingBatch::Series& s);

}  // namespace verge
