#include "cloud/alerts.h"

#include <charconv>
#include <set>

#include "cloud/api_json.h"
#include "common/clock.h"
#include "common/compress.h"
#include "common/timestamp.h"
#include "node/rules/spec.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

Status Invalid(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }

bool IsSeverity(std::string_view s) { return s == "info" || s == "warning" || s == "critical"; }

// The row as a compact JSON object, or why it is not one. Nesting is bounded while parsing,
// so that a hostile row cannot make printing it recurse without end.
Result<std::string> CheckData(const std::string& text) {
  if (text.size() > kMaxAlertDataBytes) {
    return Invalid(fmt::format("data is {} bytes, more than {}", text.size(), kMaxAlertDataBytes));
  }
  bool too_deep = false;
  json::parser_callback_t depth_check = [&](int depth, json::parse_event_t, json&) {
    if (depth > kMaxAlertDataDepth) too_deep = true;
    return !too_deep;
  };
  json j = json::parse(text, depth_check, /*allow_exceptions=*/false);
  if (too_deep) return Invalid(fmt::format("data is nested deeper than {}", kMaxAlertDataDepth));
  if (j.is_discarded() || !j.is_object()) return Invalid("data is not a JSON object");
  return j.dump();
}

}  // namespace

namespace {

// The batch's payload, decompressed and size-capped; `what` names it in errors.
Result<std::string> BatchPayload(const v1::UplinkBatch& batch, std::string_view what) {
  if (batch.seq() == 0) return Invalid("seq 0 is not a valid uplink sequence number");
  switch (batch.codec()) {
    case v1::CODEC_NONE:
      if (batch.data().size() > kMaxAlertBatchBytes) {
        return Error(Code::kResourceExhausted, "{} batch larger than {} bytes", what,
                     kMaxAlertBatchBytes);
      }
      return batch.data();
    case v1::CODEC_ZSTD: {
      auto d = ZstdDecompress(batch.data(), kMaxAlertBatchBytes);
      if (!d.ok()) return d.status().Wrap(fmt::format("{} batch data", what));
      return std::move(*d);
    }
    default:
      return Invalid(fmt::format("unknown codec {}", static_cast<int>(batch.codec())));
  }
}

bool IsNodeEventType(std::string_view t) {
  if (t.empty() || t.size() > 64 || t.find('.') == std::string_view::npos) return false;
  if (t.front() < 'a' || t.front() > 'z' || t.back() == '.') return false;
  char prev = 0;
  for (char c : t) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
    if (!ok || (c == '.' && prev == '.')) return false;
    prev = c;
  }
  return true;
}

}  // namespace

Result<std::vector<NodeEvent>> DecodeNodeEventBatch(const v1::UplinkBatch& batch,
                                                    const std::string& node) {
  VERGE_ASSIGN_OR_RETURN(std::string bytes, BatchPayload(batch, "event"));
  v1::NodeEventBatch eb;
  if (!eb.ParseFromString(bytes)) return Invalid("batch data is not a verge.v1.NodeEventBatch");
  if (static_cast<uint64_t>(eb.events_size()) != batch.count()) {
    return Invalid(
        fmt::format("batch says {} events but holds {}", batch.count(), eb.events_size()));
  }
  std::vector<NodeEvent> out;
  out.reserve(static_cast<size_t>(eb.events_size()));
  for (int i = 0; i < eb.events_size(); ++i) {
    const v1::NodeEvent& e = eb.events(i);
    if (!IsNodeEventType(e.type())) {
      return Invalid(fmt::format(
          "event {}: type {:?} is not 1-64 characters of [a-z0-9_.], dotted (autonomy.degraded)", i,
          ClipUtf8(e.type(), 80)));
    }
    if (e.ts_ms() < 0) return Invalid(fmt::format("event {}: timestamp before 1970", i));
    NodeEvent r;
    r.node = node;
    r.ts_ms = e.ts_ms();
    r.type = e.type();
    r.message = ClipUtf8(e.message(), kMaxNodeEventMessageBytes);
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<AlertRecord>> DecodeAlertBatch(const v1::UplinkBatch& batch,
                                                  const std::string& node, int64_t received_ms) {
  VERGE_ASSIGN_OR_RETURN(std::string bytes, BatchPayload(batch, "alert"));
  v1::AlertBatch ab;
  if (!ab.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Invalid("batch data is not a verge.v1.AlertBatch");
  }
  if (static_cast<uint64_t>(ab.alerts_size()) != batch.count()) {
    return Invalid(
        fmt::format("batch says {} alerts but holds {}", batch.count(), ab.alerts_size()));
  }
  std::vector<AlertRecord> out;
  out.reserve(static_cast<size_t>(ab.alerts_size()));
  for (int i = 0; i < ab.alerts_size(); ++i) {
    const v1::Alert& a = ab.alerts(i);
    auto bad = [&](std::string_view why) { return Invalid(fmt::format("alert {}: {}", i, why)); };
    if (!rules::IsValidRuleName(a.rule())) {
      return bad(fmt::format("rule name {:?} is not 1-64 characters of [A-Za-z0-9_.-]",
                             ClipUtf8(a.rule(), 80)));
    }
    if (!IsSeverity(a.severity())) {
      return bad(fmt::format("severity {:?} is not info, warning or critical",
                             ClipUtf8(a.severity(), 40)));
    }
    if (a.ts_ms() < 0) return bad("timestamp before 1970");
    auto data = CheckData(a.data_json());
    if (!data.ok()) return bad(data.status().message());
    AlertRecord r;
    r.node = node;
    r.batch_seq = batch.seq();
    r.index = static_cast<uint32_t>(i);
    r.rule = a.rule();
    r.ts_ms = a.ts_ms();
    r.severity = a.severity();
    r.message = ClipUtf8(a.message(), kMaxAlertMessageBytes);
    r.data_json = std::move(*data);
    r.received_ms = received_ms;
    out.push_back(std::move(r));
  }
  return out;
}

Result<AlertQuery> ParseAlertQuery(const std::map<std::string, std::string>& params,
                                   int64_t now_ms) {
  AlertQuery q;
  q.limit = kDefaultAlertLimit;
  std::vector<std::string> errors;
  for (const auto& [k, v] : params) {
    static const std::set<std::string> kKnown = {"rule", "node", "severity", "since", "limit"};
    if (!kKnown.count(k)) errors.push_back(fmt::format("unknown parameter {:?}", k.substr(0, 40)));
  }
  auto get = [&](const char* k) -> const std::string* {
    auto it = params.find(k);
    return it == params.end() || it->second.empty() ? nullptr : &it->second;
  };
  if (const auto* r = get("rule")) {
    if (!rules::IsValidRuleName(*r)) {
      errors.push_back(fmt::format("rule {:?} is not a valid rule name", r->substr(0, 80)));
    }
    q.rule = *r;
  }
  if (const auto* n = get("node")) {
    if (auto st = ValidateNodeName(*n); !st.ok()) errors.push_back(st.message());
    q.node = *n;
  }
  if (const auto* s = get("severity")) {
    if (!IsSeverity(*s)) {
      errors.push_back(
          fmt::format("severity {:?} is not info, warning or critical", s->substr(0, 40)));
    }
    q.severity = *s;
  }
  if (const auto* s = get("since")) {
    auto t = ParseTimeArg(*s, now_ms * 1'000'000);
    if (t.ok()) {
      // Round up: an alert at 10:00:00.000 is not before since=10:00:00.0005.
      q.since_ms = std::max<int64_t>(0, *t / 1'000'000 + (*t % 1'000'000 > 0 ? 1 : 0));
    } else {
      errors.push_back("since: " + t.status().message());
    }
  }
  if (const auto* l = get("limit")) {
    int v = 0;
    auto [p, ec] = std::from_chars(l->data(), l->data() + l->size(), v);
    if (ec != std::errc() || p != l->data() + l->size() || v < 1 || v > kMaxAlertLimit) {
      errors.push_back(fmt::format("limit must be a number from 1 to {}", kMaxAlertLimit));
    } else {
      q.limit = v;
    }
  }
  if (!errors.empty()) {
    std::string msg;
    for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + e;
    return Invalid(msg);
  }
  return q;
}

json AlertJson(const AlertRecord& a) {
  json data = json::parse(a.data_json, nullptr, false);
  if (data.is_discarded()) data = json::object();
  return {{"id", a.id},
          {"rule", a.rule},
          {"node", a.node},
          {"ts", FormatTimeMs(a.ts_ms)},
          {"tsMs", a.ts_ms},
          {"severity", a.severity},
          {"message", a.message},
          {"data", std::move(data)},
          {"receivedAt", FormatTimeMs(a.received_ms)}};
}

}  // namespace verge::cloud
