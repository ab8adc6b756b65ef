// The node's durable data path: journal, batches, eviction, TTL, pipeline and filters.
#include "node/data/buffer.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <bit>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "common/compress.h"
#include "common/sqlite.h"
#include "node/data/codec.h"
#include "node/data/filter.h"
#include "node/data/ingestor.h"
#include "node/data/pipeline.h"
#include "node/data/series.h"

namespace verge::data {
namespace {

namespace fs = std::filesystem;

class Dir {
 public:
  Dir() {
    path_ = fs::temp_directory_path() / ("verge-buffer-" + std::to_string(std::random_device{}()));
    fs::create_directories(path_);
  }
  ~Dir() { fs::remove_all(path_); }
  std::string operator/(const std::string& f) const { return (path_ / f).string(); }

 private:
  fs::path path_;
};

constexpr int64_t kT0 = 1'763'700'000'000'000'000;

std::vector<Reading> Make(const std::string& device, int n, int64_t start = kT0) {
  std::vector<Reading> out;
  for (int i = 0; i < n; ++i)
    out.push_back({device, i % 2 ? "temp" : "hum", start + i * 1'000'000'000LL, i * 0.5});
  return out;
}

std::vector<Reading> DecodeBatch(const StoredBatch& b) {
  auto raw = ZstdDecompress(b.data, 64 << 20);
  EXPECT_TRUE(raw.ok());
  auto r = DecodeReadings(*raw);
  EXPECT_TRUE(r.ok());
  return *r;
}

TEST(Codec, RoundTripsGroupedBySeries) {
  std::vector<Reading> in = {{"a", "x", kT0, 1},
                             {"b", "x", kT0 + 5, 2},
                             {"a", "x", kT0 + 7, 3},
                             {"a", "y", -5, 4},
                             {"a", "x", kT0 - 9, 5}};
  auto out = DecodeReadings(EncodeReadings(in));
  ASSERT_TRUE(out.ok());
  std::vector<Reading> want = {in[0], in[2], in[4], in[1], in[3]};
  EXPECT_EQ(*out, want);
}

TEST(Codec, CompactKeepsEveryValueBitForBitAndShortDecimalsSmall) {
  // Short decimals as devices send them, and values with no short decimal form.
  const std::vector<double> decimals = {21.5, 231.0712, -3, 0.1, 1e6, 0, 0.000000001, -17.25};
  const std::vector<double> others = {1.0 / 3, 1e300, -0.0, 5e-324, 9007199254740993.0};
  std::vector<Reading> in;
  for (size_t i = 0; i < decimals.size(); ++i)
    in.push_back({"a", "dec", kT0 + static_cast<int64_t>(i), decimals[i]});
  for (size_t i = 0; i < others.size(); ++i)
    in.push_back({"a", "other", kT0 + static_cast<int64_t>(i), others[i]});
  std::string compact = EncodeReadings(in, ReadingsEncoding::kCompact);
  auto out = DecodeReadings(compact);
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ(out->size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(std::bit_cast<uint64_t>((*out)[i].value), std::bit_cast<uint64_t>(in[i].value)) << i;
    EXPECT_EQ((*out)[i].ts_ns, in[i].ts_ns);
  }
  v1::ReadingBatch b;
  ASSERT_TRUE(b.ParseFromString(compact));
  EXPECT_EQ(b.series(0).decimal_values_size(), 8);
  EXPECT_EQ(b.series(0).decimal_exp(), 9u);
  EXPECT_EQ(b.series(1).values_size(), 5);  // one value without a short form keeps doubles
  // 100 readings of a sensor that reports two decimals: two bytes a value instead of eight.
  std::vector<Reading> sensor;
  for (int i = 0; i < 100; ++i)
    sensor.push_back({"a", "t", kT0 + i * 1'000'000'000LL, 20 + (i % 37) * 0.01});
  EXPECT_LE(EncodeReadings(sensor, ReadingsEncoding::kCompact).size() + 100 * 5,
            EncodeReadings(sensor).size());
}

TEST(Codec, RefusesInconsistentBatches) {
  v1::ReadingBatch b;
  b.add_devices("a");
  auto* s = b.add_series();
  s->set_device(3);
  EXPECT_FALSE(DecodeReadings(b.SerializeAsString()).ok());
  EXPECT_FALSE(DecodeReadings("\xff\xff garbage").ok());
  v1::ReadingBatch d;
  d.add_devices("a");
  d.add_metrics("m");
  auto* ds = d.add_series();
  ds->add_ts_delta_ns(kT0);
  ds->add_decimal_values(5);
  ds->set_decimal_exp(10);
  EXPECT_FALSE(DecodeReadings(d.SerializeAsString()).ok());  // exponent past 9
  ds->set_decimal_exp(1);
  ASSERT_TRUE(DecodeReadings(d.SerializeAsString()).ok());
  EXPECT_EQ((*DecodeReadings(d.SerializeAsString()))[0].value, 0.5);
  ds->set_decimal_values(0, (int64_t{1} << 53) + 1);
  EXPECT_FALSE(DecodeReadings(d.SerializeAsString()).ok());  // not exactly a double
  ds->set_decimal_values(0, 5);
  ds->add_values(0.5);
  ds->add_ts_delta_ns(1);
  EXPECT_FALSE(DecodeReadings(d.SerializeAsString()).ok());  // both kinds
}

TEST(UplinkBuffer, JournalSurvivesReopenAndCommitMovesTheCursor) {
  Dir dir;
  FakeClock clock;
  {
    auto buf = UplinkBuffer::Open(dir / "b.db", {}, clock);
    ASSERT_TRUE(buf.ok());
    ASSERT_TRUE((*buf)->Append(Make("d1", 3)).ok());
    ASSERT_TRUE((*buf)->Append(Make("d2", 2)).ok());
  }
  auto buf = UplinkBuffer::Open(dir / "b.db", {}, clock);
  ASSERT_TRUE(buf.ok());
  auto entries = (*buf)->ReadJournal({}, 10);
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].readings.size(), 3u);
  std::vector<StoredBatch> batches(1);
  batches[0].count = 3;
  batches[0].data = "x";
  ASSERT_TRUE((*buf)->Commit(batches, Cursor{(*entries)[1].seq, 1}).ok());
  EXPECT_EQ(batches[0].seq, 1u);
  EXPECT_EQ((*buf)->stats().journal_entries, 1u);  // the first entry is wholly consumed
  EXPECT_EQ((*buf)->cursor(), (Cursor{(*entries)[1].seq, 1}));
  EXPECT_EQ((*buf)->next_seq(), 2u);
}

// Regression: once the journal was wholly consumed, SQLite reused rowid 1 for the next entry,
// below the cursor, and the pipeline never read it (seen as readings stuck on a node after a
// restart).
TEST(UplinkBuffer, JournalSeqsKeepGrowingAfterTheJournalEmpties) {
  Dir dir;
  FakeClock clock;
  {
    auto buf = UplinkBuffer::Open(dir / "b.db", {}, clock);
    ASSERT_TRUE(buf.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*buf)->Append(Make("d", 2)).ok());
    std::vector<StoredBatch> none;
    ASSERT_TRUE((*buf)->Commit(none, Cursor{4, 0}).ok());
    EXPECT_EQ((*buf)->stats().journal_entries, 0u);
    auto seq = (*buf)->Append(Make("d", 2));
    ASSERT_TRUE(seq.ok());
    EXPECT_EQ(*seq, 4u);
    ASSERT_TRUE((*buf)->Commit(none, Cursor{5, 0}).ok());
  }
  auto buf = UplinkBuffer::Open(dir / "b.db", {}, clock);
  ASSERT_TRUE(buf.ok());
  auto seq = (*buf)->Append(Make("d", 2));
  ASSERT_TRUE(seq.ok());
  EXPECT_GE(*seq, 5u);
  auto entries = (*buf)->ReadJournal((*buf)->cursor(), 10);
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 1u);
}

// Backpressure: past the journal bound, appends are refused as retryable until the pipeline
// has taken entries out; the bound survives a restart (the size is read back from the file).
TEST(UplinkBuffer, JournalBoundRefusesUntilThePipelineCatchesUp) {
  Dir dir;
  FakeClock clock;
  size_t entry_bytes = EncodeReadings(Make("d", 10)).size();
  BufferOptions opt;
  opt.max_journal_bytes = 3 * entry_bytes;
  {
    auto buf = UplinkBuffer::Open(dir / "b.db", opt, clock);
    ASSERT_TRUE(buf.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*buf)->Append(Make("d", 10, kT0 + i)).ok());
    EXPECT_EQ((*buf)->stats().journal_bytes, 3 * entry_bytes);
    auto refused = (*buf)->Append(Make("d", 10, kT0 + 3));
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), Code::kUnavailable);
    EXPECT_NE(refused.status().message().find("retry"), std::string::npos);
    EXPECT_EQ((*buf)->stats().journal_entries, 3u);
  }
  auto buf = UplinkBuffer::Open(dir / "b.db", opt, clock);
  ASSERT_TRUE(buf.ok());
  EXPECT_EQ((*buf)->stats().journal_bytes, 3 * entry_bytes);
  EXPECT_FALSE((*buf)->Append(Make("d", 10, kT0 + 3)).ok());
  // The pipeline takes the first two entries: room again.
  auto entries = (*buf)->ReadJournal({}, 10);
  ASSERT_TRUE(entries.ok());
  std::vector<StoredBatch> none;
  ASSERT_TRUE((*buf)->Commit(none, Cursor{(*entries)[2].seq, 0}).ok());
  EXPECT_EQ((*buf)->stats().journal_bytes, entry_bytes);
  EXPECT_TRUE((*buf)->Append(Make("d", 10, kT0 + 3)).ok());
}

// A refused payload is not remembered as seen: the device's retry is accepted, not rejected
// as a duplicate.
TEST(Ingestor, ARefusedPayloadIsAcceptedWhenRetried) {
  Dir dir;
  FakeClock clock;
  BufferOptions opt;
  opt.max_journal_bytes = 1;
  auto buf = UplinkBuffer::Open(dir / "b.db", opt, clock);
  ASSERT_TRUE(buf.ok());
  ASSERT_TRUE((*buf)->Append(Make("d", 1)).ok());  // the journal is now over its bound
  Ingestor ingestor(**buf, nullptr, clock, nullptr);
  ASSERT_TRUE(ingestor.SetSchemas({{"d", {}, /*allow_undeclared=*/true}}).ok());
  auto refused = ingestor.IngestReadings(Make("d", 4, kT0 + 100));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kUnavailable);
  EXPECT_EQ(ingestor.stats().store_errors, 1u);
  std::vector<StoredBatch> none;
  ASSERT_TRUE((*buf)->Commit(none, Cursor{2, 0}).ok());
  auto retried = ingestor.IngestReadings(Make("d", 4, kT0 + 100));
  ASSERT_TRUE(retried.ok()) << retried.status().message();
  EXPECT_EQ(retried->accepted, 4u);
  EXPECT_TRUE(retried->rejected.empty());
}

TEST(UplinkBuffer, EvictsLowestPriorityOldestFirstAndCountsExactly) {
  Dir dir;
  FakeClock clock;
  BufferOptions opt;
  opt.max_bytes = 10'000;
  auto buf = UplinkBuffer::Open(dir / "b.db", opt, clock);
  ASSERT_TRUE(buf.ok());
  // 4 alerts, 4 telemetry and 4 logs batches of 1000 bytes, interleaved: 12 000 bytes in all.
  uint64_t readings_by_priority[kPriorities] = {};
  for (int i = 0; i < 4; ++i) {
    for (auto p : {v1::LOGS, v1::ALERTS, v1::TELEMETRY}) {
      std::vector<StoredBatch> b(1);
      b[0].priority = p;
      b[0].count = 10 + static_cast<uint32_t>(i);
      b[0].data = std::string(1000, 'x');
      readings_by_priority[p] += b[0].count;
      ASSERT_TRUE((*buf)->Commit(b, (*buf)->cursor()).ok());
    }
  }
  auto s = (*buf)->stats();
  EXPECT_LE(s.batch_bytes, opt.max_bytes);
  // Two logs batches went, the oldest two, and nothing else.
  EXPECT_EQ(s.by_priority[v1::LOGS].evicted_batches, 2u);
  EXPECT_EQ(s.by_priority[v1::LOGS].evicted_readings, 10u + 11u);
  EXPECT_EQ(s.by_priority[v1::TELEMETRY].evicted_batches, 0u);
  EXPECT_EQ(s.by_priority[v1::ALERTS].evicted_batches, 0u);
  // Fill further: logs go first, then telemetry; alerts survive.
  for (int i = 0; i < 6; ++i) {
    std::vector<StoredBatch> b(1);
    b[0].priority = v1::ALERTS;
    b[0].count = 1;
    b[0].data = std::string(1000, 'a');
    ASSERT_TRUE((*buf)->Commit(b, (*buf)->cursor()).ok());
  }
  s = (*buf)->stats();
  EXPECT_EQ(s.by_priority[v1::LOGS].evicted_batches, 4u);
  EXPECT_EQ(s.by_priority[v1::TELEMETRY].evicted_batches, 4u);
  EXPECT_EQ(s.by_priority[v1::ALERTS].evicted_batches, 0u);
  auto pending = (*buf)->Pending({}, 100);
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 10u);
  for (const auto& b : *pending) EXPECT_EQ(b.priority, v1::ALERTS);
  // What is missing is exactly what the counters say.
  uint64_t kept = 0;
  for (const auto& b : *pending) kept += b.count;
  uint64_t evicted = 0;
  for (const auto& c : s.by_priority) evicted += c.evicted_readings;
  EXPECT_EQ(kept + evicted, readings_by_priority[v1::LOGS] + readings_by_priority[v1::TELEMETRY] +
                                readings_by_priority[v1::ALERTS] + 6);
  // Counters survive a restart.
  buf->reset();
  auto again = UplinkBuffer::Open(dir / "b.db", opt, clock);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->stats().by_priority[v1::TELEMETRY].evicted_readings,
            readings_by_priority[v1::TELEMETRY]);
  EXPECT_EQ((*again)->stats().batches, 10u);
}

TEST(UplinkBuffer, PendingOrdersByPriorityThenAgeAndAckDeletes) {
  Dir dir;
  FakeClock clock;
  auto buf = UplinkBuffer::Open(dir / "b.db", {}, clock);
  ASSERT_TRUE(buf.ok());
  std::vector<StoredBatch> b(3);
  b[0].priority = v1::TELEMETRY;
  b[1].priority = v1::ALERTS;
  b[2].priority = v1::TELEMETRY;
  for (auto& x : b) x.count = 1;
  ASSERT_TRUE((*buf)->Commit(b, {}).ok());
  auto p = (*buf)->Pending({}, 10);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->size(), 3u);
  EXPECT_EQ((*p)[0].seq, 2u);
  EXPECT_EQ((*p)[1].seq, 1u);
  EXPECT_EQ((*p)[2].seq, 3u);
  uint64_t in_flight[] = {2};
  p = (*buf)->Pending(in_flight, 1);
  ASSERT_EQ(p->size(), 1u);
  EXPECT_EQ((*p)[0].seq, 1u);
  EXPECT_EQ((*buf)->low_seq(), 1u);
  uint64_t acked[] = {1, 2, 99};
  ASSERT_TRUE((*buf)->Ack(acked).ok());
  EXPECT_EQ((*buf)->stats().batches, 1u);
  EXPECT_EQ((*buf)->stats().acked_batches, 2u);
  EXPECT_EQ((*buf)->low_seq(), 3u);
}

TEST(UplinkBuffer, TtlDropsOldBatchesAndCountsThem) {
  Dir dir;
  FakeClock clock;
  BufferOptions opt;
  opt.ttl = Millis(60'000);
  auto buf = UplinkBuffer::Open(dir / "b.db", opt, clock);
  ASSERT_TRUE(buf.ok());
  std::vector<StoredBatch> old(2);
  for (auto& b : old) {
    b.count = 5;
    b.created_ms = clock.WallMs();
  }
  ASSERT_TRUE((*buf)->Commit(old, {}).ok());
  clock.Advance(Millis(61'000));
  std::vector<StoredBatch> fresh(1);
  fresh[0].count = 7;
  fresh[0].created_ms = clock.WallMs();
  ASSERT_TRUE((*buf)->Commit(fresh, {}).ok());
  ASSERT_TRUE((*buf)->Expire().ok());
  auto s = (*buf)->stats();
  EXPECT_EQ(s.batches, 1u);
  EXPECT_EQ(s.by_priority[v1::TELEMETRY].expired_batches, 2u);
  EXPECT_EQ(s.by_priority[v1::TELEMETRY].expired_readings, 10u);
}

TEST(Filters, DeadbandSamplingAndMaxSilence) {
  UplinkFilters f;
  FilterSpec db;
  db.deadband_pct = 10;
  db.min = 0;
  db.max = 100;
  db.max_silence_ns = 10'000'000'000;
  FilterSpec sample;
  sample.sample_every = 3;
  f.Set({{{"d", "db"}, db}, {{"d", "s"}, sample}});
  std::vector<Reading> out;
  double vals[] = {50, 55, 59, 61, 70, 71};
  for (int i = 0; i < 6; ++i) f.Apply({"d", "db", kT0 + i * 1'000'000'000LL, vals[i]}, out);
  // 50 sent; 55, 59 within 10; 61 moved 11; 70 moved 9; 71 moved 10 (not more).
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].value, 61);
  out.clear();
  f.Apply({"d", "db", kT0 + 20'000'000'000LL, 62}, out);  // silent too long
  EXPECT_EQ(out.size(), 1u);
  out.clear();
  for (int i = 0; i < 7; ++i) f.Apply({"d", "s", kT0 + i, 1.0 * i}, out);
  ASSERT_EQ(out.size(), 3u);  // 0, 3, 6
  EXPECT_EQ(out[1].value, 3);
  out.clear();
  f.Apply({"d", "unfiltered", kT0, 1}, out);
  EXPECT_EQ(out.size(), 1u);
}

TEST(Filters, SwingingDoorKeepsEveryReadingWithinTheDeviation) {
  UplinkFilters f;
  FilterSpec sd;
  sd.swinging_door = 0.5;
  f.Set({{{"d", "m"}, sd}});
  std::vector<Reading> in, out;
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0, 0.1);
  for (int i = 0; i < 2000; ++i) {
    double v = (i < 1000 ? i * 0.01 : 10 - (i - 1000) * 0.02) + noise(rng);
    in.push_back({"d", "m", kT0 + i * 1'000'000'000LL, v});
    f.Apply(in.back(), out);
  }
  out.push_back(in.back());  // the held point, as max-silence or the next reading would send
  EXPECT_LT(out.size(), in.size() / 5);
  // Linear interpolation between sent points stays within the deviation of every reading.
  size_t j = 0;
  for (const auto& r : in) {
    while (j + 1 < out.size() && out[j + 1].ts_ns < r.ts_ns) ++j;
    if (j + 1 >= out.size()) break;
    const auto& a = out[j];
    const auto& b = out[j + 1];
    double t = static_cast<double>(r.ts_ns - a.ts_ns) / static_cast<double>(b.ts_ns - a.ts_ns);
    double est = a.value + t * (b.value - a.value);
    EXPECT_LE(std::fabs(est - r.value), 0.5 + 1e-9) << "at " << r.ts_ns;
  }
}

TEST(Pipeline, JournalToBatchesToSeriesExactlyOnceAcrossRestarts) {
  Dir dir;
  FakeClock clock;
  PipelineOptions opt;
  opt.batch_max_readings = 7;
  std::vector<Reading> all;
  {
    auto buf = UplinkBuffer::Open(dir / "b.db", {}, clock);
    auto series = SeriesStore::Open(dir / "s.db");
    ASSERT_TRUE(buf.ok() && series.ok());
    Pipeline p(**buf, series->get(), clock, opt);
    for (int i = 0; i < 5; ++i) {
      auto r = Make("dev" + std::to_string(i), 4, kT0 + i * 100'000'000'000LL);
      all.insert(all.end(), r.begin(), r.end());
      ASSERT_TRUE((*buf)->Append(r).ok());
    }
    ASSERT_TRUE(p.Step(false).ok());  // 20 readings: two batches of 7 close, 6 stay open
    EXPECT_EQ((*buf)->stats().batches, 2u);
    // A "crash" here: the open batch was never committed.
  }
  auto buf = UplinkBuffer::Open(dir / "b.db", {}, clock);
  auto series = SeriesStore::Open(dir / "s.db");
  ASSERT_TRUE(buf.ok() && series.ok());
  Pipeline p(**buf, series->get(), clock, opt);
  ASSERT_TRUE(p.Step(true).ok());
  auto batches = (*buf)->Pending({}, 100);
  ASSERT_TRUE(batches.ok());
  std::multiset<std::pair<std::string, int64_t>> sent, want;
  for (const auto& b : *batches)
    for (const auto& r : DecodeBatch(b)) sent.insert({r.device + "/" + r.metric, r.ts_ns});
  for (const auto& r : all) want.insert({r.device + "/" + r.metric, r.ts_ns});
  EXPECT_EQ(sent, want);
  EXPECT_EQ((*buf)->stats().journal_entries, 0u);
  SeriesQuery q;
  q.device = "dev3";
  auto pts = (*series)->Query(q);
  ASSERT_TRUE(pts.ok());
  EXPECT_EQ(pts->size(), 4u);
}

TEST(Pipeline, ClosesBatchesOnAge) {
  Dir dir;
  FakeClock clock;
  auto buf = UplinkBuffer::Open(dir / "b.db", {}, clock);
  ASSERT_TRUE(buf.ok());
  PipelineOptions opt;
  opt.batch_max_age = Millis(1000);
  Pipeline p(**buf, nullptr, clock, opt);
  ASSERT_TRUE((*buf)->Append(Make("d", 3)).ok());
  ASSERT_TRUE(p.Step(false).ok());
  EXPECT_EQ((*buf)->stats().batches, 0u);
  clock.Advance(Millis(1000));
  ASSERT_TRUE(p.Step(false).ok());
  EXPECT_EQ((*buf)->stats().batches, 1u);
  EXPECT_EQ((*buf)->stats().batch_readings, 3u);
}

// The nice value of this process's thread named `name`, if there is one.
std::optional<int> ThreadNice(const std::string& name) {
  for (const auto& t : fs::directory_iterator("/proc/self/task")) {
    std::ifstream comm(t.path() / "comm");
    std::string c;
    std::getline(comm, c);
    if (c != name) continue;
    std::ifstream stat(t.path() / "stat");
    std::string line;
    std::getline(stat, line);
    // Fields after the command's closing parenthesis: state is field 3, nice field 19.
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 19 && rest >> field; ++i) {
    }
    return std::stoi(field);
  }
  return std::nullopt;
}

TEST(Pipeline, ItsThreadYieldsToIngestByItsNiceValue) {
  Dir dir;
  FakeClock clock;
  auto buf = UplinkBuffer::Open(dir / "b.db", {}, clock);
  ASSERT_TRUE(buf.ok());
  errno = 0;
  const int base = getpriority(PRIO_PROCESS, 0);  // this thread's, under whatever ran the test
  ASSERT_EQ(errno, 0);
  PipelineOptions opt;
  opt.nice = std::min(19, base + 7);
  Pipeline p(**buf, nullptr, clock, opt);
  p.Start();
  std::optional<int> nice;
  for (int i = 0; i < 500 && nice != opt.nice; ++i) {
    nice = ThreadNice("verge-pipeline");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(nice, opt.nice);
  EXPECT_EQ(ThreadNice("data_tests"), base);  // the rest of the process is left alone
  p.Stop();
}

TEST(Series, QueryAggregatesAndIsIdempotent) {
  Dir dir;
  auto s = SeriesStore::Open(dir / "s.db");
  ASSERT_TRUE(s.ok());
  std::vector<Reading> r;
  for (int i = 0; i < 10; ++i) r.push_back({"d", "m", kT0 + i * 1'000'000'000LL, 1.0 * i});
  ASSERT_TRUE((*s)->Insert(r).ok());
  ASSERT_TRUE((*s)->Insert(r).ok());
  SeriesQuery q;
  q.device = "d";
  q.metric = "m";
  auto all = (*s)->Query(q);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 10u);
  q.step_ns = 5'000'000'000;
  q.agg = Aggregate::kAvg;
  auto agg = (*s)->Query(q);
  ASSERT_TRUE(agg.ok());
  ASSERT_EQ(agg->size(), 2u);
  EXPECT_DOUBLE_EQ((*agg)[0].value, 2.0);
  EXPECT_DOUBLE_EQ((*agg)[1].value, 7.0);
  EXPECT_TRUE((*s)->Contains(r[3]));
  EXPECT_FALSE((*s)->Contains({"d", "m", kT0 + 1, 0}));
  auto pruned = (*s)->Prune(kT0 + 5'000'000'000LL);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 5u);
}

int64_t ChunkRows(const std::string& path) {
  auto db = sql::Db::Open(path);
  EXPECT_TRUE(db.ok());
  auto st = db->Prepare("SELECT count(*) FROM chunks");
  EXPECT_TRUE(st.ok());
  EXPECT_TRUE(*st->Step());
  return st->Int(0);
}

std::vector<std::pair<int64_t, double>> Points(SeriesStore& s, SeriesQuery q) {
  auto r = s.Query(q);
  EXPECT_TRUE(r.ok()) << r.status().message();
  std::vector<std::pair<int64_t, double>> out;
  if (r.ok())
    for (const auto& p : *r) out.emplace_back(p.ts_ns, p.value);
  return out;
}

// 1,000 readings a second apart, starting 100 s before an hour boundary.
constexpr int64_t kHour = int64_t{3600} * 1'000'000'000;
constexpr int64_t kCell = kT0 - kT0 % kHour + kHour;

TEST(Series, KeepsReadingsInChunksAcrossHoursAndCalls) {
  Dir dir;
  auto s = SeriesStore::Open(dir / "s.db");
  ASSERT_TRUE(s.ok());
  std::vector<Reading> all;
  for (int i = 0; i < 1000; ++i)
    all.push_back({"d", "m", kCell - 100'000'000'000LL + i * 1'000'000'000LL, i * 0.25});
  // Uneven calls, as the pipeline's steps are.
  for (size_t at = 0, n = 1; at < all.size(); at += n, n = n * 3 % 397 + 1)
    ASSERT_TRUE((*s)->Insert(std::span(all).subspan(at, std::min(n, all.size() - at))).ok());
  SeriesQuery q;
  q.device = "d";
  auto pts = Points(**s, q);
  ASSERT_EQ(pts.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(pts[i].first, all[i].ts_ns);
    EXPECT_EQ(pts[i].second, all[i].value);
  }
  // 100 readings before the boundary, 900 after: one chunk, then four (256 each, the last open).
  EXPECT_EQ(ChunkRows(dir / "s.db"), 5);
  q.from_ns = all[90].ts_ns;
  q.to_ns = all[110].ts_ns;  // inclusive
  pts = Points(**s, q);
  ASSERT_EQ(pts.size(), 21u);
  EXPECT_EQ(pts.front().first, all[90].ts_ns);
  EXPECT_EQ(pts.back().first, all[110].ts_ns);
  q.from_ns = 0;
  q.to_ns = INT64_MAX;
  q.limit = 300;
  EXPECT_EQ(Points(**s, q).size(), 300u);
  // Two-hour buckets: the ones before and after the boundary fall in different buckets only
  // if the boundary is on the two-hour grid; count what each bucket holds either way.
  q.limit = 10;
  q.step_ns = 2 * kHour;
  q.agg = Aggregate::kCount;
  double counted = 0;
  for (const auto& [ts, v] : Points(**s, q)) counted += v;
  EXPECT_EQ(counted, 1000);
}

TEST(Series, ARepeatedOrLateReadingKeepsTheFirstValueStored) {
  Dir dir;
  auto s = SeriesStore::Open(dir / "s.db");
  ASSERT_TRUE(s.ok());
  std::vector<Reading> first;
  for (int i = 0; i < 600; ++i) first.push_back({"d", "m", kCell + i * 2'000'000'000LL, 1.0 * i});
  ASSERT_TRUE((*s)->Insert(first).ok());
  // The same timestamps again with other values (a replay), and late readings between them,
  // out of order: the first chunks are full by now, so these land in newer chunks.
  std::vector<Reading> late;
  for (int i = 599; i >= 0; i -= 7) {
    late.push_back({"d", "m", first[i].ts_ns, -1.0});
    late.push_back({"d", "m", first[i].ts_ns + 1'000'000'000LL, -2.0});
  }
  ASSERT_TRUE((*s)->Insert(late).ok());
  ASSERT_TRUE((*s)->Insert(late).ok());
  SeriesQuery q;
  q.device = "d";
  q.metric = "m";
  q.limit = 100'000;
  auto pts = Points(**s, q);
  ASSERT_EQ(pts.size(), 600u + 86u);
  for (size_t i = 1; i < pts.size(); ++i) ASSERT_LT(pts[i - 1].first, pts[i].first);
  for (const auto& [ts, v] : pts) {
    bool original = (ts - kCell) % 2'000'000'000LL == 0;
    EXPECT_EQ(v, original ? static_cast<double>((ts - kCell) / 2'000'000'000LL) : -2.0);
  }
  for (const auto& r : late) EXPECT_TRUE((*s)->Contains(r));
  EXPECT_FALSE((*s)->Contains({"d", "m", kCell + 3'000'000'000LL, 0}));
  EXPECT_FALSE((*s)->Contains({"d", "other", kCell, 0}));
}

TEST(Series, AReopenedStoreGoesOnFillingTheOpenChunk) {
  Dir dir;
  std::vector<Reading> r;
  for (int i = 0; i < 20; ++i) r.push_back({"d", "m", kCell + i * 1'000'000'000LL, 1.0 * i});
  {
    auto s = SeriesStore::Open(dir / "s.db");
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->Insert(std::span(r).first(10)).ok());
  }
  auto s = SeriesStore::Open(dir / "s.db");
  ASSERT_TRUE(s.ok());
  // A pipeline restarting from its cursor stores the first readings again.
  ASSERT_TRUE((*s)->Insert(r).ok());
  SeriesQuery q;
  q.device = "d";
  EXPECT_EQ(Points(**s, q).size(), 20u);
  EXPECT_EQ(ChunkRows(dir / "s.db"), 1);
}

TEST(Series, PruneIsExactInsideAChunk) {
  Dir dir;
  auto s = SeriesStore::Open(dir / "s.db");
  ASSERT_TRUE(s.ok());
  std::vector<Reading> r;
  for (int i = 0; i < 600; ++i) {
    r.push_back({"d", "a", kCell - 300'000'000'000LL + i * 1'000'000'000LL, 1.0 * i});
    r.push_back({"d", "b", kCell - 300'000'000'000LL + i * 1'000'000'000LL, 2.0 * i});
  }
  std::stable_sort(r.begin(), r.end(),
                   [](const Reading& x, const Reading& y) { return x.metric < y.metric; });
  ASSERT_TRUE((*s)->Insert(r).ok());
  // 400 of each series are older than this: the hour before the boundary whole (300) and
  // 100 of a chunk that straddles the cut.
  auto pruned = (*s)->Prune(kCell + 100'000'000'000LL);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 800u);
  SeriesQuery q;
  q.device = "d";
  q.metric = "b";
  auto pts = Points(**s, q);
  ASSERT_EQ(pts.size(), 200u);
  EXPECT_EQ(pts.front().first, kCell + 100'000'000'000LL);
  EXPECT_EQ(pts.front().second, 800.0);
  // The store takes readings in a pruned cell again.
  ASSERT_TRUE((*s)->Insert(std::vector<Reading>{{"d", "b", kCell, 7.0}}).ok());
  EXPECT_EQ(Points(**s, q).size(), 201u);
}

TEST(Series, MovesAStoreWithOneRowPerReadingIntoChunks) {
  Dir dir;
  {
    auto db = sql::Db::Open(dir / "s.db");
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->Exec(R"sql(
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL);
INSERT INTO schema_migrations VALUES (1, 0);
CREATE TABLE series (id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL,
                     UNIQUE (device, metric));
CREATE TABLE points (series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL,
                     PRIMARY KEY (series, ts)) WITHOUT ROWID;
INSERT INTO series VALUES (1, 'd', 'm'), (2, 'd', 'n');
)sql")
                    .ok());
    auto ins = db->Prepare("INSERT INTO points VALUES (?, ?, ?)");
    ASSERT_TRUE(ins.ok());
    for (int i = 0; i < 700; ++i) {
      ins->Bind(1, int64_t{1 + i % 2})
          .Bind(2, int64_t{kCell + i * int64_t{1'000'000'000}})
          .Bind(3, 0.5 * i);
      ASSERT_TRUE(ins->Run().ok());
      ins->Reset();
    }
  }
  auto s = SeriesStore::Open(dir / "s.db");
  ASSERT_TRUE(s.ok()) << s.status().message();
  SeriesQuery q;
  q.device = "d";
  auto pts = (*s)->Query(q);
  ASSERT_TRUE(pts.ok());
  ASSERT_EQ(pts->size(), 700u);
  EXPECT_EQ((*pts)[0].metric, "m");
  EXPECT_EQ((*pts)[349].metric, "m");
  EXPECT_EQ((*pts)[350].metric, "n");
  EXPECT_EQ((*pts)[351].value, 1.5);
  EXPECT_EQ(ChunkRows(dir / "s.db"), 4);  // 350 per series: 256 + 94
}

TEST(Ingestor, AcceptsCleansAndJournals) {
  Dir dir;
  FakeClock clock;
  auto buf = UplinkBuffer::Open(dir / "b.db", {}, clock);
  ASSERT_TRUE(buf.ok());
  int appended = 0;
  Ingestor ing(**buf, nullptr, clock, [&] { ++appended; });
  DeviceSchema schema;
  schema.device = "d1";
  MetricSpec m;
  m.name = "temp";
  m.max = 100;
  schema.metrics.push_back(m);
  ASSERT_TRUE(ing.SetSchemas({schema}).ok());
  auto rep = ing.IngestPayload(
      "d1", R"([{"value": 5, "metric": "temp"}, {"value": 500, "metric": "temp"}])",
      Framing::kJson);
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  EXPECT_EQ(rep->accepted, 1u);
  ASSERT_EQ(rep->rejected.size(), 1u);
  EXPECT_EQ(rep->rejected[0].reason, RejectReason::kOutOfRange);
  EXPECT_EQ(appended, 1);
  EXPECT_EQ((*buf)->stats().journal_entries, 1u);
  EXPECT_FALSE(ing.IngestPayload("d1", "{not json", Framing::kJson).ok());
  auto unknown = ing.IngestPayload("nobody", R"({"value": 1})", Framing::kJson);
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(unknown->accepted, 0u);
}

}  // namespace
}  // namespace verge::data
