// Alerts on their way into and out of the cloud store, without I/O: decoding and validating
// an UplinkBatch of content BATCH_ALERTS from a node (codec, size cap, AlertBatch, count, rule
// names, severities, data objects, sizes), GET /api/v1/alerts parameters, and the JSON the API
// answers with. Alerts are stored by the TelemetryWriter with the readings (telemetry.h).
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cloud/model.h"
#include "common/status.h"
#include "verge/v1/link.pb.h"

namespace verge::cloud {

// Largest AlertBatch a compressed batch may expand to.
inline constexpr size_t kMaxAlertBatchBytes = size_t{16} << 20;
// Largest output row (data_json) of one alert: a batch with a larger one is refused.
inline constexpr size_t kMaxAlertDataBytes = size_t{1} << 20;
// Longer messages are cut to this (at a character boundary).
inline constexpr size_t kMaxAlertMessageBytes = size_t{4} << 10;
// Deepest nesting of an alert's data.
inline constexpr int kMaxAlertDataDepth = 64;
// GET /api/v1/alerts: default and largest limit.
inline constexpr int kDefaultAlertLimit = 100;
inline constexpr int kMaxAlertLimit = 10'000;

// The alerts of a batch, each with node, batch_seq, index and received_ms set (id is the
// store's). kInvalidArgument (kResourceExhausted for the size cap) says why the batch can
// never be stored; resending it cannot help.
Result<std::vector<AlertRecord>> DecodeAlertBatch(const v1::UplinkBatch& batch,
                                                  const std::string& node, int64_t received_ms);

// The events of a batch of content BATCH_EVENTS, for the node's event history (ts_ms the
// node's). Types must be lowercase and dotted (autonomy.degraded): an undotted type is one
// the cloud itself records (online, offline, ...), which a node may not forge.
Result<std::vector<NodeEvent>> DecodeNodeEventBatch(const v1::UplinkBatch& batch,
                                                    const std::string& node);
// Largest NodeEvent message kept; longer ones are cut (at a character boundary).
inline constexpr size_t kMaxNodeEventMessageBytes = 2000;

// rule, node, severity, since (RFC 3339, epoch ms, or a duration meaning that long ago), limit
// (1-10,000, default 100). Every problem at once; unknown parameters are errors.
Result<AlertQuery> ParseAlertQuery(const std::map<std::string, std::string>& params,
                                   int64_t now_ms);

// {"id", "rule", "node", "ts", "tsMs", "severity", "message", "data", "receivedAt"}, data the
// output row as an object.
nlohmann::json AlertJson(const AlertRecord& alert);

}  // namespace verge::cloud
