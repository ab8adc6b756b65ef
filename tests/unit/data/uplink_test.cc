// The uplink sender under a rate limit: batches go one at a time, highest priority first, so an
// alert that arrives while readings wait goes next; without a limit a window goes at once.
#include "node/data/uplink.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <random>

#include "common/clock.h"

namespace verge::data {
namespace {

namespace fs = std::filesystem;

struct Sent {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<v1::UplinkBatch> batches;

  void Add(v1::Envelope env) {
    std::lock_guard lock(mu);
    batches.push_back(env.uplink_batch());
    cv.notify_all();
  }
  bool WaitFor(size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(60), [&] { return batches.size() >= n; });
  }
  std::vector<v1::Priority> Priorities() {
    std::lock_guard lock(mu);
    std::vector<v1::Priority> out;
    for (const auto& b : batches) out.push_back(b.priority());
    return out;
  }
};

struct Fixture {
  fs::path dir;
  SystemClock clock;
  std::unique_ptr<UplinkBuffer> buffer;
  std::mt19937 rng{7};

  Fixture() {
    dir = fs::temp_directory_path() / ("verge-uplink-" + std::to_string(std::random_device{}()));
    fs::create_directories(dir);
    buffer = std::move(UplinkBuffer::Open((dir / "buffer.db").string(), {}, clock).value());
  }
  ~Fixture() {
    buffer.reset();
    fs::remove_all(dir);
  }
  void Add(v1::Priority p, size_t bytes) {
    std::vector<StoredBatch> b(1);
    b[0].priority = p;
    b[0].count = 1;
    b[0].created_ms = clock.WallMs();
    b[0].data.resize(bytes);
    for (auto& c : b[0].data) c = static_cast<char>(rng());
    ASSERT_TRUE(buffer->AddBatches(b).ok());
  }
};

TEST(UplinkRate, UnderALimitAnAlertThatArrivesLaterGoesBeforeWaitingReadings) {
  Fixture f;
  for (int i = 0; i < 6; ++i) f.Add(v1::TELEMETRY, 8000);
  Sent sent;
  UplinkOptions o;
  o.rate_bytes_per_s = 2000;  // after the first batch, four seconds before the next
  UplinkSender sender(
      *f.buffer, [&](v1::Envelope e) { sent.Add(std::move(e)); }, o);
  sender.Start();
  sender.OnSession(true);
  ASSERT_TRUE(sent.WaitFor(1));
  f.Add(v1::ALERTS, 200);
  sender.Notify();
  ASSERT_TRUE(sent.WaitFor(3));
  auto order = sent.Priorities();
  EXPECT_EQ(order[1], v1::ALERTS) << "the alert waited behind readings";
  auto s = sender.stats();
  EXPECT_GE(s.rate_waits, 1u);
  EXPECT_GT(s.bytes_sent, 16000u);
  sender.Stop();
}

TEST(UplinkRate, WithoutALimitAWindowGoesAtOnce) {
  Fixture f;
  for (int i = 0; i < 20; ++i) f.Add(v1::TELEMETRY, 8000);
  Sent sent;
  UplinkOptions o;
  o.window = 16;
  UplinkSender sender(
      *f.buffer, [&](v1::Envelope e) { sent.Add(std::move(e)); }, o);
  sender.Start();
  sender.OnSession(true);
  ASSERT_TRUE(sent.WaitFor(16));
  EXPECT_EQ(sender.stats().rate_waits, 0u);
  EXPECT_EQ(sender.stats().in_flight, 16u);
  sender.Stop();
}

}  // namespace
}  // namespace verge::data
