// The one reading of a v1::ReadingBatch's delta-coded series, shared by the node (its journal
// and uplink batches) and the cloud (batches from nodes), so that both check a batch the same
// way.
// Thread-safety: free functions, thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "verge/v1/link.pb.h"

namespace verge {

// Checks series `i` of `batch` (device and metric indices in range, as many timestamps as
// values) and writes its absolute timestamps into `ts`. Deltas add with wrapping 64-bit
// arithmetic, as EncodeReadings writes them, but a sum that leaves int64 is refused.
// kInvalidArgument says what is wrong; `ts` is then unspecified.
Status SeriesTimestamps(const v1::ReadingBatch& batch, int i, std::vector<int64_t>& ts);

}  // namespace verge
