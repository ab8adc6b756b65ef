// Telemetry without a network: the uplink decoder's validation, the chunk format, exactly-once
// storage in the SQLite store (on a file, so that its three connections are exercised), the
// group-commit writer, and queries (parameters, deduplication, aggregates, paging).
#include "cloud/telemetry.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "cloud/store_sqlite.h"
#include "cloud/telemetry_codec.h"
#include "cloud/telemetry_query.h"
#include "common/compress.h"
#include "store_fixture.h"

namespace verge::cloud {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kT0 = int64_t{1'700'000'000} * kSec;  // 2023-11-14T22:13:20Z

struct SeriesSpec {
  std::string device;
  std::string metric;
  std::vector<int64_t> ts;
  std::vector<double> values;
};

v1::ReadingBatch MakeReadingBatch(const std::vector<SeriesSpec>& series) {
  v1::ReadingBatch rb;
  std::map<std::string, uint32_t> devices, metrics;
  for (const auto& s : series) {
    if (!devices.count(s.device)) {
      devices[s.device] = static_cast<uint32_t>(rb.devices_size());
      rb.add_devices(s.device);
    }
    if (!metrics.count(s.metric)) {
      metrics[s.metric] = static_cast<uint32_t>(rb.metrics_size());
      rb.add_metrics(s.metric);
    }
    auto* ps = rb.add_series();
    ps->set_device(devices[s.device]);
    ps->set_metric(metrics[s.metric]);
    int64_t prev = 0;
    for (size_t i = 0; i < s.ts.size(); ++i) {
      ps->add_ts_delta_ns(s.ts[i] - prev);
      prev = s.ts[i];
      ps->add_values(s.values[i]);
    }
  }
  return rb;
}

v1::UplinkBatch MakeBatch(uint64_t seq, const std::vector<SeriesSpec>& series, uint64_t low_seq = 0,
                          bool zstd = true) {
  v1::UplinkBatch b;
  b.set_seq(seq);
  b.set_low_seq(low_seq);
  b.set_priority(v1::TELEMETRY);
  uint32_t count = 0;
  for (const auto& s : series) count += static_cast<uint32_t>(s.ts.size());
  b.set_count(count);
  std::string raw = MakeReadingBatch(series).SerializeAsString();
  if (zstd) {
    b.set_codec(v1::CODEC_ZSTD);
    b.set_data(*ZstdCompress(raw));
  } else {
    b.set_codec(v1::CODEC_NONE);
    b.set_data(raw);
  }
  return b;
}

SeriesSpec Regular(const std::string& device, const std::string& metric, int64_t start, int n,
                   int64_t step = kSec, double base = 20) {
  SeriesSpec s{device, metric, {}, {}};
  for (int i = 0; i < n; ++i) {
    s.ts.push_back(start + i * step);
    s.values.push_back(base + i * 0.5);
  }
  return s;
}

// ---- Chunk format ---------------------------------------------------------------------------

void ExpectRoundTrip(const std::vector<int64_t>& ts, const std::vector<double>& values) {
  std::string blob = EncodeChunk(ts, values);
  std::vector<int64_t> ts2 = {42};  // DecodeChunk appends
  std::vector<double> v2 = {4.2};
  ASSERT_TRUE(DecodeChunk(blob, ts2, v2).ok());
  ASSERT_EQ(ts2.size(), ts.size() + 1);
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(ts2[i + 1], ts[i]) << i;
    EXPECT_EQ(std::bit_cast<uint64_t>(v2[i + 1]), std::bit_cast<uint64_t>(values[i])) << i;
  }
}

TEST(Chunk, RoundTripsExactly) {
  ExpectRoundTrip({}, {});
  ExpectRoundTrip({kT0}, {21.5});
  auto reg = Regular("d", "m", kT0, 1000);
  ExpectRoundTrip(reg.ts, reg.values);
  // Unsorted, negative, extreme timestamps and awkward values survive bit for bit.
  ExpectRoundTrip({5, 3, std::numeric_limits<int64_t>::max(), 0,
                   std::numeric_limits<int64_t>::min(), -7, 9, 9, 9, 1},
                  {-0.0, 1e308, std::numeric_limits<double>::denorm_min(), -1e-308, 0.1, 3, 3, 3,
                   std::numeric_limits<double>::lowest(), 1});
  std::mt19937_64 rng(7);
  std::vector<int64_t> ts;
  std::vector<double> v;
  for (int i = 0; i < 5000; ++i) {
    ts.push_back(static_cast<int64_t>(rng() >> 2));
    v.push_back(std::bit_cast<double>(rng() & 0x7fefffffffffffffULL));
  }
  ExpectRoundTrip(ts, v);
}

TEST(Chunk, RegularSignalsCompressWell) {
  auto s = Regular("d", "m", kT0, 3600);
  std::string blob = EncodeChunk(s.ts, s.values);
  EXPECT_LT(blob.size(), s.ts.size() * 3) << "regular timestamps and a slow ramp";
}

TEST(Chunk, KeepsTheSmallerOfTwoValueLayouts) {
  // Rounded readings repeat exactly: stored as they are, zstd matches whole values.
  std::mt19937 rng(3);
  std::vector<int64_t> ts;
  std::vector<double> rounded, smooth;
  for (int i = 0; i < 2000; ++i) {
    ts.push_back(kT0 + i * kSec);
    rounded.push_back(std::round((20 + 3 * std::sin(i / 50.0) + (rng() % 100) / 100.0) * 100) /
                      100);
    smooth.push_back(1000 + i * 0.25);
  }
  std::string r = EncodeChunk(ts, rounded);
  std::string s = EncodeChunk(ts, smooth);
  EXPECT_EQ(r[0], 2) << "raw values";
  EXPECT_EQ(s[0], 1) << "XOR planes";
  EXPECT_LT(r.size(), ts.size() * 3);
  ExpectRoundTrip(ts, rounded);
  ExpectRoundTrip(ts, smooth);
}

TEST(Chunk, DamageIsDataLossNotACrash) {
  auto s = Regular("d", "m", kT0, 100);
  std::string blob = EncodeChunk(s.ts, s.values);
  std::vector<int64_t> ts;
  std::vector<double> v;
  for (size_t cut = 0; cut < blob.size(); cut += 3) {
    auto st = DecodeChunk(std::string_view(blob).substr(0, cut), ts, v);
    EXPECT_EQ(st.code(), Code::kDataLoss) << cut;
    EXPECT_TRUE(ts.empty() && v.empty()) << "outputs untouched on error";
  }
  // Found by fuzz_uplink: an empty chunk of raw values passed memcpy a null pointer.
  ASSERT_TRUE(DecodeChunk(std::string("\x02\x00\x00\x00", 4), ts, v).ok());
  EXPECT_TRUE(ts.empty() && v.empty());
  std::string bad = blob;
  bad[0] = 9;
  EXPECT_EQ(DecodeChunk(bad, ts, v).code(), Code::kDataLoss);
  std::mt19937 rng(1);
  for (int i = 0; i < 2000; ++i) {
    std::string flip = blob;
    flip[rng() % flip.size()] ^= static_cast<char>(1 << (rng() % 8));
    ts.clear();
    v.clear();
    (void)DecodeChunk(flip, ts, v);  // any answer, but no crash or sanitizer report
  }
}

// ---- Uplink decoding ------------------------------------------------------------------------

TEST(DecodeUplink, DecodesAbsoluteTimestampsSortedAndMergesRepeatedSeries) {
  SeriesSpec a{"dev-1", "temp", {kT0 + 2, kT0, kT0 + 1}, {3, 1, 2}};
  SeriesSpec b{"dev-1", "temp", {kT0 + 3}, {4}};
  SeriesSpec c{"dev-2", "hum", {kT0}, {40}};
  for (bool zstd : {true, false}) {
    auto d = DecodeUplink(MakeBatch(9, {a, c, b}, 4, zstd));
    ASSERT_TRUE(d.ok()) << d.status().message();
    EXPECT_EQ(d->seq, 9u);
    EXPECT_EQ(d->low_seq, 4u);
    EXPECT_EQ(d->count, 5u);
    ASSERT_EQ(d->series.size(), 2u);
    EXPECT_EQ(d->series[0].device, "dev-1");
    EXPECT_EQ(d->series[0].ts, (std::vector<int64_t>{kT0, kT0 + 1, kT0 + 2, kT0 + 3}));
    EXPECT_EQ(d->series[0].values, (std::vector<double>{1, 2, 3, 4}));
    EXPECT_EQ(d->series[1].metric, "hum");
  }
}

TEST(DecodeUplink, RejectsWhatCanNeverBeStored) {
  auto good = MakeBatch(1, {Regular("d", "m", kT0, 3)});
  ASSERT_TRUE(DecodeUplink(good).ok());
  auto expect_bad = [](v1::UplinkBatch b, std::string_view why) {
    auto d = DecodeUplink(b);
    ASSERT_FALSE(d.ok()) << why;
    EXPECT_NE(d.status().message().find(why), std::string::npos) << d.status().message();
  };
  {
    auto b = good;
    b.set_codec(static_cast<v1::Codec>(7));
    expect_bad(b, "unknown codec");
  }
  {
    auto b = good;
    b.set_data("not zstd at all");
    expect_bad(b, "zstd");
  }
  {
    auto b = good;
    b.set_codec(v1::CODEC_NONE);
    b.set_data("\xff\xff\xff");
    expect_bad(b, "not a verge.v1.ReadingBatch");
  }
  {
    auto b = good;
    b.set_count(4);
    expect_bad(b, "says 4 readings but holds 3");
  }
  {
    auto b = good;
    b.set_seq(0);
    expect_bad(b, "seq 0");
  }
  auto with = [](const std::function<void(v1::ReadingBatch&)>& mutate) {
    v1::ReadingBatch rb = MakeReadingBatch({Regular("d", "m", kT0, 3)});
    mutate(rb);
    v1::UplinkBatch b;
    b.set_seq(1);
    b.set_count(3);
    b.set_data(rb.SerializeAsString());
    return b;
  };
  expect_bad(with([](auto& rb) { rb.mutable_series(0)->set_device(5); }), "device index 5");
  expect_bad(with([](auto& rb) { rb.mutable_series(0)->set_metric(1); }), "metric index 1");
  expect_bad(with([](auto& rb) { rb.mutable_series(0)->add_values(1); }), "3 timestamps but 4");
  expect_bad(with([](auto& rb) { rb.mutable_series(0)->set_values(1, NAN); }), "not finite");
  expect_bad(with([](auto& rb) { rb.mutable_series(0)->set_values(2, INFINITY); }), "not finite");
  expect_bad(with([](auto& rb) {
               auto* s = rb.mutable_series(0);
               s->clear_values();
               for (int i = 0; i < 3; ++i) s->add_decimal_values(i);
               s->set_decimal_exp(12);
             }),
             "decimal exponent 12");
  expect_bad(with([](auto& rb) { rb.mutable_series(0)->add_decimal_values(1); }),
             "3 timestamps but 4");
  expect_bad(with([](auto& rb) { rb.set_devices(0, "bad name"); }), "device name");
  expect_bad(with([](auto& rb) { rb.set_metrics(0, std::string(65, 'm')); }), "metric name");
  expect_bad(with([](auto& rb) { rb.mutable_series(0)->set_ts_delta_ns(0, -5); }), "before 1970");
  expect_bad(with([](auto& rb) {
               rb.mutable_series(0)->set_ts_delta_ns(1, std::numeric_limits<int64_t>::max());
             }),
             "overflows");
  // A zstd bomb is cut off at the cap, not decompressed whole.
  v1::UplinkBatch bomb;
  bomb.set_seq(1);
  bomb.set_codec(v1::CODEC_ZSTD);
  bomb.set_data(*ZstdCompress(std::string(size_t{2} << 20, '\0')));
  auto d = DecodeUplink(bomb, size_t{1} << 20);
  EXPECT_EQ(d.status().code(), Code::kResourceExhausted);
}

TEST(MakeChunks, NeverCrossAnHourAndMergeRepeatedSeries) {
  int64_t hour = kChunkSpanNs;
  int64_t base = (kT0 / hour + 1) * hour;  // an hour boundary
  SeriesSpec s{"d", "m", {base - 2, base + hour + 5, base - 1, base}, {1, 4, 2, 3}};
  auto d1 = DecodeUplink(MakeBatch(1, {s}));
  auto d2 = DecodeUplink(MakeBatch(2, {SeriesSpec{"d", "m", {base - 1}, {9}}}));
  ASSERT_TRUE(d1.ok() && d2.ok());
  EXPECT_EQ(d1->min_ts, base - 2);
  EXPECT_EQ(d1->max_ts, base + hour + 5);
  std::vector<SeriesReadings> series = d1->series;
  series.insert(series.end(), d2->series.begin(), d2->series.end());
  auto chunks = MakeChunks("n1", series);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].node, "n1");
  EXPECT_EQ(chunks[0].start_ts, base - 2);
  EXPECT_EQ(chunks[0].end_ts, base - 1);
  EXPECT_EQ(chunks[0].count, 3u) << "both batches' readings in one chunk";
  std::vector<int64_t> ts;
  std::vector<double> v;
  ASSERT_TRUE(DecodeChunk(chunks[0].data, ts, v).ok());
  EXPECT_EQ(ts, (std::vector<int64_t>{base - 2, base - 1, base - 1}));
  EXPECT_EQ(v, (std::vector<double>{1, 2, 9})) << "stable: the first batch's reading first";
  EXPECT_EQ(chunks[1].start_ts, base);
  EXPECT_EQ(chunks[2].start_ts, base + hour + 5);

  // A long series is split so that no chunk is costly to decode.
  auto big = DecodeUplink(MakeBatch(3, {Regular("d", "m", base, 70'000, 1000)}));
  auto split = MakeChunks("n1", big->series);
  ASSERT_EQ(split.size(), 2u);
  EXPECT_EQ(split[0].count, kMaxChunkReadings);
  EXPECT_EQ(split[1].start_ts, base + static_cast<int64_t>(kMaxChunkReadings) * 1000);
}

// ---- Query parameters -----------------------------------------------------------------------

TEST(QueryTime, AcceptsRfc3339EpochMsNowAndAgo) {
  const int64_t now = kT0 + 123;
  EXPECT_EQ(*ParseTimeArg("now", now), now);
  EXPECT_EQ(*ParseTimeArg("1700000000000", now), kT0);
  EXPECT_EQ(*ParseTimeArg("2023-11-14T22:13:20Z", now), kT0);
  EXPECT_EQ(*ParseTimeArg("2023-11-14T22:13:20.000000001Z", now), kT0 + 1);
  EXPECT_EQ(*ParseTimeArg("2023-11-14T22:13:20.5z", now), kT0 + kSec / 2);
  EXPECT_EQ(*ParseTimeArg("2023-11-15T00:13:20+02:00", now), kT0);
  EXPECT_EQ(*ParseTimeArg("1h", now), now - 3600 * kSec);
  EXPECT_EQ(*ParseTimeArg("-1h", now), now - 3600 * kSec);
  EXPECT_EQ(*ParseTimeArg("90s", now), now - 90 * kSec);
  for (const char* bad : {"", "yesterday", "2023-13-01T00:00:00Z", "2023-11-14T22:13:20",
                          "2023-11-14T22:13:20.Z", "99999999999999", "-", "1x", "12:00"}) {
    auto t = ParseTimeArg(bad, now);
    EXPECT_FALSE(t.ok()) << bad;
    if (!t.ok()) {
      EXPECT_NE(t.status().message().find("RFC 3339"), std::string::npos);
    }
  }
}

TEST(QueryParams, DefaultsAndEveryErrorAtOnce) {
  const int64_t now = kT0;
  auto q = ParseTelemetryQuery({{"device", "d1"}}, now);
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(q->from_ns, 0);
  EXPECT_EQ(q->to_ns, now + 3600 * kSec);
  EXPECT_EQ(q->limit, kDefaultQueryLimit);
  EXPECT_EQ(q->agg, Aggregate::kNone);

  auto full = ParseTelemetryQuery({{"device", "d1"},
                                   {"node", "n1"},
                                   {"metric", "temp"},
                                   {"from", "-2h"},
                                   {"to", "now"},
                                   {"step", "5m"},
                                   {"agg", "max"},
                                   {"limit", "50"},
                                   {"after", "temp,123"}},
                                  now);
  ASSERT_TRUE(full.ok()) << full.status().message();
  EXPECT_EQ(full->step_ns, 300 * kSec);
  EXPECT_EQ(full->agg, Aggregate::kMax);
  EXPECT_EQ(full->limit, 50u);
  EXPECT_TRUE(full->has_after);
  EXPECT_EQ(full->after_metric, "temp");
  EXPECT_EQ(full->after_ts, 123);

  auto bad = ParseTelemetryQuery({{"device", "bad name"},
                                  {"from", "soon"},
                                  {"step", "1m"},
                                  {"limit", "0"},
                                  {"after", "x"},
                                  {"colour", "red"}},
                                 now);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  for (const char* part : {"device", "from:", "step and agg go together", "limit must be",
                           "after must be", "unknown parameter \"colour\""}) {
    EXPECT_NE(bad.status().message().find(part), std::string::npos)
        << part << " in " << bad.status().message();
  }
  EXPECT_FALSE(ParseTelemetryQuery({}, now).ok()) << "device is required";
  EXPECT_FALSE(ParseTelemetryQuery({{"device", "d"}, {"from", "now"}, {"to", "1h"}}, now).ok());
  EXPECT_FALSE(ParseTelemetryQuery({{"device", "d"}, {"step", "1m"}, {"agg", "median"}}, now).ok());
  EXPECT_FALSE(ParseTelemetryQuery({{"device", "d"}, {"step", "0s"}, {"agg", "avg"}}, now).ok());
}

TEST(QueryTime, FormatsWithTheFractionDigitsNeeded) {
  EXPECT_EQ(FormatTimeNs(kT0), "2023-11-14T22:13:20Z");
  EXPECT_EQ(FormatTimeNs(kT0 + kSec / 2), "2023-11-14T22:13:20.5Z");
  EXPECT_EQ(FormatTimeNs(kT0 + 1), "2023-11-14T22:13:20.000000001Z");
  EXPECT_EQ(FormatTimeNs(kT0 + 123'000), "2023-11-14T22:13:20.000123Z");
  EXPECT_EQ(FormatTimeNs(0), "1970-01-01T00:00:00Z");
  // What it writes, the parser reads back.
  for (int64_t t : {kT0, kT0 + 1, kT0 + 999'999'999, int64_t{86'399} * kSec + 7}) {
    EXPECT_EQ(*ParseTimeArg(FormatTimeNs(t), 0), t);
  }
}

// ---- Store, writer and queries --------------------------------------------------------------

class TelemetryStoreTest : public SqliteStoreTest {
 protected:
  static Store::UplinkRecord Record(const std::string& node, v1::UplinkBatch b) {
    auto d = DecodeUplink(b);
    EXPECT_TRUE(d.ok()) << d.status().message();
    return StageUplink(node, std::move(b), *d);
  }

  // Compacts everything staged, as the writer's thread would.
  void CompactAll(TelemetryWriterOptions opts = {}) {
    TelemetryWriter writer(*store_, opts);
    for (;;) {
      auto n = writer.Compact();
      ASSERT_TRUE(n.ok()) << n.status().message();
      if (*n == 0) break;
    }
  }

  int64_t Rows(const std::string& table) {
    auto db = sql::Db::Open((dir_ / "verge.db").string());
    auto st = db->Prepare("SELECT count(*) FROM " + table);
    EXPECT_TRUE(st.ok() && *st->Step());
    return st->Int(0);
  }

  std::vector<bool> StoreAll(const std::vector<Store::UplinkRecord>& recs) {
    std::vector<const Store::UplinkRecord*> ptrs;
    for (const auto& r : recs) ptrs.push_back(&r);
    auto res = store_->StoreUplink(ptrs);
    EXPECT_TRUE(res.ok()) << res.status().message();
    return res.ok() ? *res : std::vector<bool>();
  }

  std::vector<Point> Query(std::map<std::string, std::string> params) {
    auto q = ParseTelemetryQuery(params, kT0 + 100 * 3600 * kSec);
    EXPECT_TRUE(q.ok()) << q.status().message();
    auto pts = RunTelemetryQuery(*store_, *q);
    EXPECT_TRUE(pts.ok()) << pts.status().message();
    return pts.ok() ? *pts : std::vector<Point>();
  }
};

TEST_F(TelemetryStoreTest, StoresEachSeqOnceEvenWithinOneGroup) {
  auto b1 = Record("n1", MakeBatch(1, {Regular("d1", "temp", kT0, 10)}));
  auto b2 = Record("n1", MakeBatch(2, {Regular("d1", "temp", kT0 + 10 * kSec, 10)}));
  auto other = Record("n2", MakeBatch(1, {Regular("d2", "temp", kT0, 5)}));
  EXPECT_EQ(StoreAll({b1, b2, b1, other}), (std::vector<bool>{true, true, false, true}));
  EXPECT_EQ(StoreAll({b2}), std::vector<bool>{false}) << "already stored: acked, not stored";
  EXPECT_EQ(*store_->UplinkStoredSeq("n1"), 2u);
  EXPECT_EQ(*store_->UplinkStoredSeq("n2"), 1u);
  EXPECT_EQ(*store_->UplinkStoredSeq("n3"), 0u);
  EXPECT_EQ(Rows("telemetry_staged"), 3);
  auto check = [&] {
    auto pts = Query({{"device", "d1"}});
    ASSERT_EQ(pts.size(), 20u);
    for (int i = 0; i < 20; ++i) {
      EXPECT_EQ(pts[i].ts_ns, kT0 + i * kSec);
      EXPECT_EQ(pts[i].value, 20 + (i % 10) * 0.5);
    }
  };
  check();  // staged
  CompactAll();
  EXPECT_EQ(Rows("telemetry_staged"), 0);
  EXPECT_EQ(Rows("telemetry_chunks"), 2) << "d1/temp and d2/temp, both batches of d1 merged";
  check();  // compacted
  // Survives a reopen, and the dedupe state with it.
  store_.reset();
  store_ = std::move(SqliteStore::Open((dir_ / "verge.db").string())).value();
  check();
  EXPECT_EQ(StoreAll({b1}), std::vector<bool>{false});
}

TEST_F(TelemetryStoreTest, LowSeqForgetsPairsButStillRefusesOldSeqs) {
  std::vector<Store::UplinkRecord> recs;
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    recs.push_back(Record("n1", MakeBatch(seq, {Regular("d", "m", kT0 + seq * kSec, 1)}, 1)));
  }
  EXPECT_EQ(StoreAll(recs), std::vector<bool>(5, true));
  // The node says everything below 5 is acknowledged: pairs 1-4 may go.
  auto r6 = Record("n1", MakeBatch(6, {Regular("d", "m", kT0 + 6 * kSec, 1)}, 5));
  EXPECT_EQ(StoreAll({r6}), std::vector<bool>{true});
  EXPECT_EQ(Rows("uplink_received"), 2);
  // A late copy of seq 3 (below low_seq) is a duplicate, not new data.
  EXPECT_EQ(StoreAll({recs[2]}), std::vector<bool>{false});
  EXPECT_EQ(StoreAll({recs[4]}), std::vector<bool>{false}) << "5 is still remembered";
  EXPECT_EQ(Query({{"device", "d"}}).size(), 6u);
  // A node that numbers afresh: forgetting its seqs makes seq 1 new again.
  ASSERT_TRUE(store_->ResetUplink("n1").ok());
  EXPECT_EQ(*store_->UplinkStoredSeq("n1"), 0u);
  EXPECT_EQ(StoreAll({Record("n1", MakeBatch(1, {Regular("d", "m", kT0 + 60 * kSec, 1)}))}),
            std::vector<bool>{true});
}

TEST_F(TelemetryStoreTest, OverlappingReadingsAreDedupedAtQueryTime) {
  // The node lost its buffer cursor and resent the same readings under new seqs, partly
  // overlapping; the query shows every timestamp once, from what was stored first.
  StoreAll({Record("n1", MakeBatch(1, {Regular("d", "m", kT0, 10)}))});
  auto check = [&](const char* state) {
    auto pts = Query({{"device", "d"}});
    ASSERT_EQ(pts.size(), 15u) << state;
    for (int i = 0; i < 15; ++i) EXPECT_EQ(pts[i].ts_ns, kT0 + i * kSec) << state;
    EXPECT_EQ(pts[5].value, 20 + 5 * 0.5) << state << ": the earlier reading wins";
    EXPECT_EQ(pts[14].value, 99 + 9 * 0.5) << state;
  };
  CompactAll();
  SeriesSpec again = Regular("d", "m", kT0 + 5 * kSec, 10, kSec, 99);
  StoreAll({Record("n1", MakeBatch(2, {again}))});
  check("a chunk and a staged batch");
  CompactAll();
  EXPECT_EQ(Rows("telemetry_chunks"), 2);
  check("two overlapping chunks");
  // The same overlap within one compaction.
  StoreAll({Record("n1", MakeBatch(3, {Regular("e", "m", kT0, 10)})),
            Record("n1", MakeBatch(4, {Regular("e", "m", kT0 + 5 * kSec, 10, kSec, 99)}))});
  CompactAll();
  auto pts = Query({{"device", "e"}});
  ASSERT_EQ(pts.size(), 15u);
  EXPECT_EQ(pts[5].value, 20 + 5 * 0.5);
}

TEST_F(TelemetryStoreTest, QueriesFilterAggregateAndPage) {
  SeriesSpec temp = Regular("d", "temp", kT0, 120);  // 2 minutes, 1 s apart
  SeriesSpec hum = Regular("d", "hum", kT0, 60, 2 * kSec, 40);
  SeriesSpec other = Regular("e", "temp", kT0, 5);
  StoreAll({Record("n1", MakeBatch(1, {temp, hum, other}))});
  StoreAll({Record("n2", MakeBatch(1, {Regular("d", "temp", kT0 + 500 * kSec, 3)}))});

  std::vector<Point> first_all;
  for (const char* state : {"staged", "compacted"}) {
    SCOPED_TRACE(state);
    if (std::string(state) == "compacted") CompactAll();
    auto all = Query({{"device", "d"}});
    ASSERT_EQ(all.size(), 183u);
    EXPECT_EQ(all.front().metric, "hum") << "ordered by metric, then time";
    EXPECT_EQ(all[60].metric, "temp");
    if (first_all.empty()) {
      first_all = all;
    } else {
      for (size_t i = 0; i < all.size(); ++i) {
        EXPECT_EQ(all[i].ts_ns, first_all[i].ts_ns);
        EXPECT_EQ(all[i].value, first_all[i].value);
      }
    }
    EXPECT_EQ(Query({{"device", "d"}, {"node", "n2"}}).size(), 3u);
    EXPECT_EQ(Query({{"device", "d"}, {"metric", "temp"}}).size(), 123u);
    EXPECT_TRUE(Query({{"device", "nobody"}}).empty());

    // [from, to): from inclusive, to exclusive; epoch ms and RFC 3339 both work.
    auto window = Query({{"device", "d"},
                         {"metric", "temp"},
                         {"from", std::to_string((kT0 + 10 * kSec) / 1'000'000)},
                         {"to", FormatTimeNs(kT0 + 20 * kSec)}});
    ASSERT_EQ(window.size(), 10u);
    EXPECT_EQ(window.front().ts_ns, kT0 + 10 * kSec);
    EXPECT_EQ(window.back().ts_ns, kT0 + 19 * kSec);

    // One point per minute bucket (epoch-aligned), value per aggregate.
    int64_t minute = 60 * kSec;
    int64_t b0 = kT0 - kT0 % minute;
    std::map<std::string, std::vector<double>> by_agg;
    for (const char* agg : {"avg", "min", "max", "sum", "count"}) {
      auto pts = Query({{"device", "d"},
                        {"metric", "temp"},
                        {"to", FormatTimeNs(kT0 + 120 * kSec)},
                        {"step", "1m"},
                        {"agg", agg}});
      ASSERT_EQ(pts.size(), 3u) << agg;  // kT0 is 20 s into a minute: 40 + 60 + 20 readings
      EXPECT_EQ(pts[0].ts_ns, b0);
      EXPECT_EQ(pts[1].ts_ns, b0 + minute);
      for (const auto& p : pts) by_agg[agg].push_back(p.value);
    }
    EXPECT_EQ(by_agg["count"], (std::vector<double>{40, 60, 20}));
    EXPECT_EQ(by_agg["min"][0], 20);
    EXPECT_EQ(by_agg["max"][0], 20 + 39 * 0.5);
    EXPECT_DOUBLE_EQ(by_agg["sum"][1], 60 * 20 + 0.5 * (40 + 99) * 60 / 2);
    EXPECT_DOUBLE_EQ(by_agg["avg"][1], by_agg["sum"][1] / 60);

    // Paging with limit and after=<metric>,<tsNs> walks everything exactly once.
    std::vector<Point> paged;
    std::map<std::string, std::string> params = {{"device", "d"}, {"limit", "50"}};
    for (int page = 0; page < 10; ++page) {
      auto pts = Query(params);
      paged.insert(paged.end(), pts.begin(), pts.end());
      if (pts.size() < 50) break;
      params["after"] = pts.back().metric + "," + std::to_string(pts.back().ts_ns);
    }
    ASSERT_EQ(paged.size(), all.size());
    for (size_t i = 0; i < all.size(); ++i) {
      EXPECT_EQ(paged[i].metric, all[i].metric);
      EXPECT_EQ(paged[i].ts_ns, all[i].ts_ns);
    }
  }
}

TEST_F(TelemetryStoreTest, RetentionDropsWholeOldChunksAndStagedBatches) {
  int64_t hour = kChunkSpanNs;
  int64_t base = ChunkBucket(kT0);
  StoreAll({Record("n1", MakeBatch(1, {Regular("d", "m", base, 3, hour)}))});
  StoreAll({Record("n1", MakeBatch(2, {Regular("e", "m", base, 1)}))});
  CompactAll();
  StoreAll({Record("n1", MakeBatch(3, {Regular("f", "m", base, 1)}))});  // stays staged
  EXPECT_EQ(Query({{"device", "d"}}).size(), 3u);
  auto removed = store_->PruneTelemetry(ChunkBucket(base + hour + 1));
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 3) << "d's first hour, e's chunk, f's staged batch";
  auto pts = Query({{"device", "d"}});
  ASSERT_EQ(pts.size(), 2u);
  EXPECT_EQ(pts[0].ts_ns, base + hour);
  EXPECT_TRUE(Query({{"device", "f"}}).empty());
}

TEST_F(TelemetryStoreTest, CompactionMergesManyBatchesIntoFewChunks) {
  // 30 batches, each one reading from each of 100 devices: staged, 30 rows; compacted, one
  // chunk per device.
  for (uint64_t seq = 1; seq <= 30; ++seq) {
    std::vector<SeriesSpec> series;
    for (int d = 0; d < 100; ++d) {
      series.push_back(Regular(fmt::format("dev-{}", d), "m", kT0 + seq * kSec, 1, kSec, d));
    }
    StoreAll({Record("n1", MakeBatch(seq, series))});
  }
  TelemetryWriterOptions small;
  small.compact_max_batches = 8;  // four slices
  TelemetryWriter writer(*store_, small);
  std::vector<size_t> slices;
  for (;;) {
    auto n = writer.Compact();
    ASSERT_TRUE(n.ok());
    if (*n == 0) break;
    slices.push_back(*n);
  }
  EXPECT_EQ(slices, (std::vector<size_t>{8, 8, 8, 6}));
  EXPECT_EQ(writer.counters().readings_compacted.load(), 3000u);
  EXPECT_EQ(Rows("telemetry_chunks"), 400) << "100 devices x 4 slices";
  EXPECT_EQ(Rows("telemetry_staged"), 0);
  auto pts = Query({{"device", "dev-7"}});
  ASSERT_EQ(pts.size(), 30u);
  EXPECT_EQ(pts[0].ts_ns, kT0 + kSec);
  EXPECT_EQ(pts[29].value, 7);
}

TEST_F(TelemetryStoreTest, ADamagedStagedBatchIsDroppedNotFatal) {
  StoreAll({Record("n1", MakeBatch(1, {Regular("d", "m", kT0, 3)})),
            Record("n1", MakeBatch(2, {Regular("d", "m", kT0 + 10 * kSec, 3)}))});
  {
    auto db = sql::Db::Open((dir_ / "verge.db").string());
    ASSERT_TRUE(db->Exec("UPDATE telemetry_staged SET data = x'00ff' WHERE seq = 1").ok());
  }
  EXPECT_EQ(Query({{"device", "d"}}).size(), 3u) << "queries skip it";
  TelemetryWriter writer(*store_);
  EXPECT_EQ(*writer.Compact(), 2u);
  EXPECT_EQ(writer.counters().staged_damaged.load(), 1u);
  EXPECT_EQ(Rows("telemetry_staged"), 0);
  EXPECT_EQ(Query({{"device", "d"}}).size(), 3u);
}

class RecordingStream : public LinkStream {
 public:
  void Send(std::string frame) override {
    v1::Envelope env;
    ASSERT_TRUE(env.ParseFromString(frame));
    std::lock_guard lock(mu);
    sent.push_back(env);
  }
  void Close() override {}
  std::vector<uint64_t> AckedSeqs() {
    std::lock_guard lock(mu);
    std::vector<uint64_t> out;
    for (const auto& e : sent) {
      for (auto s : e.uplink_ack().seqs()) out.push_back(s);
    }
    return out;
  }
  size_t Frames() {
    std::lock_guard lock(mu);
    return sent.size();
  }
  std::mutex mu;
  std::vector<v1::Envelope> sent;
};

TEST_F(TelemetryStoreTest, WriterAcksOnlyAfterTheGroupCommitted) {
  TelemetryWriter writer(*store_);
  auto s1 = std::make_shared<RecordingStream>();
  auto s2 = std::make_shared<RecordingStream>();
  for (uint64_t seq : {1, 2, 3}) {
    ASSERT_TRUE(writer.Submit(
        {Record("n1", MakeBatch(seq, {Regular("d", "m", kT0 + seq * 10 * kSec, 10)})), s1}));
  }
  ASSERT_TRUE(writer.Submit({Record("n2", MakeBatch(1, {Regular("e", "m", kT0, 4)})), s2}));
  ASSERT_TRUE(
      writer.Submit({Record("n1", MakeBatch(2, {Regular("d", "m", kT0 + 20 * kSec, 10)})), s1}));
  EXPECT_TRUE(s1->AckedSeqs().empty());
  EXPECT_TRUE(Query({{"device", "d"}}).empty()) << "nothing visible before the commit";
  EXPECT_EQ(writer.CommitPending(), 5u) << "one group, one transaction";
  EXPECT_EQ(s1->Frames(), 1u) << "one ack per stream per group";
  EXPECT_EQ(s1->AckedSeqs(), (std::vector<uint64_t>{1, 2, 3, 2}));
  EXPECT_EQ(s2->AckedSeqs(), std::vector<uint64_t>{1});
  EXPECT_EQ(writer.counters().batches_stored.load(), 4u);
  EXPECT_EQ(writer.counters().batches_duplicate.load(), 1u);
  EXPECT_EQ(writer.counters().readings_stored.load(), 34u);
  EXPECT_EQ(writer.counters().commits.load(), 1u);
  EXPECT_EQ(Query({{"device", "d"}}).size(), 30u);
  EXPECT_EQ(writer.queued_bytes(), 0u);
  EXPECT_EQ(writer.CommitPending(), 0u);
}

TEST_F(TelemetryStoreTest, WriterRefusesBeyondItsQueueBoundAndAfterStop) {
  TelemetryWriterOptions opts;
  opts.max_queue_bytes = 1;
  TelemetryWriter writer(*store_, opts);
  auto first = Record("n1", MakeBatch(1, {Regular("d", "m", kT0, 2000)}));
  EXPECT_TRUE(writer.Submit({first, nullptr})) << "an empty queue takes any one batch";
  auto next = Record("n1", MakeBatch(2, {Regular("d", "m", kT0 + 3000 * kSec, 1)}));
  EXPECT_FALSE(writer.Submit({next, nullptr}));
  EXPECT_EQ(writer.counters().refused_queue_full.load(), 1u);
  writer.Stop();  // commits what was queued
  EXPECT_EQ(Query({{"device", "d"}}).size(), 2000u);
  EXPECT_FALSE(writer.Submit({next, nullptr}));
}

// Regression: with one condition variable for both threads, the wake-up for a queued batch
// could go to the idle compaction thread, and the batch stayed queued, never acknowledged.
TEST_F(TelemetryStoreTest, ABatchQueuedWhileBothThreadsWaitIsCommitted) {
  TelemetryWriter writer(*store_);
  writer.Start();
  auto s = std::make_shared<RecordingStream>();
  for (uint64_t seq = 1; seq <= 20; ++seq) {
    ASSERT_TRUE(
        writer.Submit({Record("n1", MakeBatch(seq, {Regular("d", "m", kT0 + seq * kSec, 1)})), s}));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (s->AckedSeqs().size() < seq && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(s->AckedSeqs().size(), seq) << "batch " << seq << " was never committed";
  }
}

TEST_F(TelemetryStoreTest, WriterThreadCommitsAndCompactsOnItsOwn) {
  // A batch left staged by a previous run is compacted too.
  StoreAll({Record("n1", MakeBatch(1000, {Regular("old", "m", kT0, 5)}))});
  TelemetryWriterOptions opts;
  opts.compact_min_readings = 1000;
  opts.compact_max_delay = std::chrono::milliseconds(20);  // the tail below 1000 readings
  TelemetryWriter writer(*store_, opts);
  writer.Start();
  auto s = std::make_shared<RecordingStream>();
  for (uint64_t seq = 1; seq <= 50; ++seq) {
    ASSERT_TRUE(writer.Submit(
        {Record("n1", MakeBatch(seq, {Regular("d", "m", kT0 + seq * 100 * kSec, 100)})), s}));
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((s->AckedSeqs().size() < 50 || writer.counters().readings_compacted.load() < 5005) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  writer.Stop();
  auto acked = s->AckedSeqs();
  std::sort(acked.begin(), acked.end());
  ASSERT_EQ(acked.size(), 50u);
  EXPECT_EQ(acked.front(), 1u);
  EXPECT_EQ(acked.back(), 50u);
  EXPECT_EQ(writer.counters().readings_compacted.load(), 5005u);
  EXPECT_EQ(Rows("telemetry_staged"), 0);
  EXPECT_EQ(Query({{"device", "d"}, {"limit", "100000"}}).size(), 5000u);
  EXPECT_EQ(Query({{"device", "old"}}).size(), 5u);
}

}  // namespace
}  // namespace verge::cloud
