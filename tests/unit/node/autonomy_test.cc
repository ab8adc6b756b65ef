#include "node/autonomy.h"

#include <gtest/gtest.h>

namespace verge::node {
namespace {

using std::chrono::milliseconds;

struct Fixture {
  FakeClock clock;
  AutonomyOptions options;
  std::unique_ptr<Autonomy> a;

  Fixture() {
    options.after_failures = 3;
    options.silence = milliseconds(60'000);
    options.quiet = milliseconds(5'000);
    a = std::make_unique<Autonomy>(options, clock);
  }

  std::vector<std::string> Path() {
    std::vector<std::string> out;
    for (const auto& t : a->TakeNew())
      out.push_back(std::string(LinkModeName(t.from)) + ">" + std::string(LinkModeName(t.to)));
    return out;
  }
};

TEST(Autonomy, StartsAutonomousAndConnectsThroughResync) {
  Fixture f;
  EXPECT_EQ(f.a->mode(), LinkMode::kAutonomous);
  f.clock.Advance(milliseconds(300));
  f.a->SessionUp(/*cloud_version=*/4, /*applied=*/2);
  EXPECT_EQ(f.a->mode(), LinkMode::kResyncing);
  f.a->DesiredApplied(4);
  EXPECT_EQ(f.a->mode(), LinkMode::kConnected);
  EXPECT_EQ(f.Path(), (std::vector<std::string>{"autonomous>resyncing", "resyncing>connected"}));
  auto s = f.a->Snapshot();
  EXPECT_EQ(s.transitions, 2u);
  EXPECT_EQ(s.total_ms[static_cast<size_t>(LinkMode::kAutonomous)], 300);
}

TEST(Autonomy, CurrentDesiredStatePassesResyncAtOnce) {
  Fixture f;
  f.a->SessionUp(7, 7);
  EXPECT_EQ(f.a->mode(), LinkMode::kConnected);
  EXPECT_EQ(f.Path(), (std::vector<std::string>{"autonomous>resyncing", "resyncing>connected"}));
}

TEST(Autonomy, ALostStreamDegradesAndTheThirdFailureMakesItAutonomous) {
  Fixture f;
  f.a->SessionUp(1, 1);
  f.Path();
  f.a->SessionDown("link lost: connection reset");
  EXPECT_EQ(f.a->mode(), LinkMode::kDegraded);
  f.a->AttemptFailed("link lost: connection reset");  // the lost stream is failure 1
  f.a->AttemptFailed("cannot connect: refused");
  EXPECT_EQ(f.a->mode(), LinkMode::kDegraded);
  f.a->AttemptFailed("cannot connect: refused");
  EXPECT_EQ(f.a->mode(), LinkMode::kAutonomous);
  auto t = f.a->TakeNew();
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].reason, "link lost: connection reset");
  EXPECT_NE(t[1].reason.find("3 attempts failed in a row"), std::string::npos) << t[1].reason;
  // More failures while autonomous are counted, not transitions.
  f.a->AttemptFailed("cannot connect: refused");
  EXPECT_TRUE(f.a->TakeNew().empty());
  EXPECT_EQ(f.a->Snapshot().failures, 4u);
}

TEST(Autonomy, ABriefBlipRecoversWithoutGoingAutonomous) {
  Fixture f;
  f.a->SessionUp(1, 1);
  f.a->SessionDown("link lost");
  f.a->AttemptFailed("link lost");
  f.a->SessionUp(1, 1);
  EXPECT_EQ(f.a->mode(), LinkMode::kConnected);
  for (const auto& step : f.Path()) EXPECT_NE(step, "degraded>autonomous");
  EXPECT_EQ(f.a->Snapshot().failures, 0u);
}

TEST(Autonomy, SilenceMakesItAutonomousEvenWhileAttemptsHang) {
  Fixture f;
  f.a->SessionUp(1, 1);
  f.a->SessionDown("no word from the cloud");
  f.a->AttemptFailed("no word from the cloud");
  f.Path();
  f.clock.Advance(milliseconds(59'000));
  f.a->Tick();
  EXPECT_EQ(f.a->mode(), LinkMode::kDegraded);
  f.clock.Advance(milliseconds(1'000));
  f.a->Tick();
  EXPECT_EQ(f.a->mode(), LinkMode::kAutonomous);
}

TEST(Autonomy, AQuietLiveStreamIsDegradedUntilTheCloudIsHeardAgain) {
  Fixture f;
  f.a->SessionUp(1, 1);
  f.Path();
  f.clock.Advance(milliseconds(4'000));
  f.a->Heard();
  f.clock.Advance(milliseconds(4'999));
  f.a->Tick();
  EXPECT_EQ(f.a->mode(), LinkMode::kConnected);
  f.clock.Advance(milliseconds(1));
  f.a->Tick();
  EXPECT_EQ(f.a->mode(), LinkMode::kDegraded);
  f.a->Heard();
  EXPECT_EQ(f.a->mode(), LinkMode::kConnected);
  EXPECT_EQ(f.Path(), (std::vector<std::string>{"connected>degraded", "degraded>connected"}));
}

TEST(Autonomy, AStreamLostWhileResyncingGoesBackToDegraded) {
  Fixture f;
  f.a->SessionUp(5, 4);
  f.a->SessionDown("link lost");
  EXPECT_EQ(f.a->mode(), LinkMode::kDegraded);
  // A desired state applied from another path after the stream ended does not end a resync
  // that is no longer under way.
  f.a->DesiredApplied(5);
  EXPECT_EQ(f.a->mode(), LinkMode::kDegraded);
}

TEST(Autonomy, HistoryIsBoundedAndTimeInStateAddsUp) {
  Fixture f;
  for (int i = 0; i < 100; ++i) {
    f.clock.Advance(milliseconds(10));
    f.a->SessionUp(1, 1);
    f.clock.Advance(milliseconds(10));
    f.a->SessionDown("x");
    for (int k = 0; k < 3; ++k) f.a->AttemptFailed("x");
  }
  auto s = f.a->Snapshot();
  EXPECT_EQ(s.recent.size(), f.options.history);
  int64_t total = 0;
  for (auto ms : s.total_ms) total += ms;
  EXPECT_EQ(total, 2000);
  EXPECT_EQ(f.a->TakeNew().size(), s.transitions);
}

}  // namespace
}  // namespace verge::node
