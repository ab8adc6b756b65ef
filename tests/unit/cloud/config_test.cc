#include "cloud/config.h"

#include <gtest/gtest.h>

namespace verge::cloud {
namespace {

TEST(CloudConfig, DefaultsAreValidAndDocumented) {
  CloudConfig c;
  EXPECT_TRUE(ValidateCloudConfig(c).ok());
  EXPECT_EQ(c.degraded_after.count(), 30000);
  EXPECT_EQ(c.offline_after.count(), 90000);
  std::string printed = CloudConfigSchema().Print(c);
  CloudConfig back;
  ASSERT_TRUE(CloudConfigSchema().Parse(printed, back, "printed").ok()) << printed;
  EXPECT_EQ(back.api_listen, c.api_listen);
}

TEST(CloudConfig, ValidationReportsAllProblems) {
  CloudConfig c;
  c.api_listen = "nonsense";
  c.degraded_after = Millis(5000);
  c.offline_after = Millis(1000);
  c.log_level = "loud";
  auto st = ValidateCloudConfig(c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("apiListen"), std::string::npos);
  EXPECT_NE(st.message().find("offlineAfter"), std::string::npos);
  EXPECT_NE(st.message().find("logLevel"), std::string::npos);
}

TEST(CloudConfig, TelemetryRetention) {
  CloudConfig c;
  EXPECT_EQ(c.telemetry_retention.count(), int64_t{30} * 24 * 3600 * 1000);
  ASSERT_TRUE(CloudConfigSchema().Parse("telemetryRetention: 90d\n", c, "test").ok());
  EXPECT_EQ(c.telemetry_retention.count(), int64_t{90} * 24 * 3600 * 1000);
  EXPECT_NE(CloudConfigSchema().Print(c).find("telemetryRetention: 90d"), std::string::npos);
  c.telemetry_retention = Millis(60'000);
  auto st = ValidateCloudConfig(c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("telemetryRetention must be at least 1h"), std::string::npos);
}

}  // namespace
}  // namespace verge::cloud
