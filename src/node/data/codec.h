// Encoding of readings as a v1::ReadingBatch: names dictionary-coded, readings grouped by
// series, timestamps delta-coded. Used for the node's ingest journal (as is) and for uplink
// batches (then zstd-compressed).
// Thread-safety: free functions, thread-safe.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "node/data/reading.h"

namespace verge::data {

// kCompact also writes values as exact short decimals where they have one (a few more
// nanoseconds per reading, for bytes on the uplink).
enum class ReadingsEncoding { kFast, kCompact };

// Readings of one series stay in their input order; series appear in order of first use.
std::string EncodeReadings(std::span<const Reading> readings,
                           ReadingsEncoding encoding = ReadingsEncoding::kFast);

// The exact inverse of EncodeReadings, in its grouped order. Refuses a malformed batch.
Result<std::vector<Reading>> DecodeReadings(std::string_view bytes);

}  // namespace verge::data
