#include "node/config.h"

#include <gtest/gtest.h>

namespace verge::node {
namespace {

TEST(NodeConfig, ParsesFileAndValidates) {
  NodeConfig c;
  ASSERT_TRUE(NodeConfigSchema()
                  .Parse("cloud: 127.0.0.1:7444\nname: n1\ntype: server\nlabels: {site: a}\n"
                         "heartbeat: 5s\n",
                         c, "node.yaml")
                  .ok());
  EXPECT_EQ(c.type, "server");
  EXPECT_EQ(c.labels.at("site"), "a");
  EXPECT_EQ(c.heartbeat.count(), 5000);
  EXPECT_TRUE(ValidateNodeConfig(c).ok());
}

TEST(NodeConfig, ValidationNamesEachProblem) {
  NodeConfig c;
  c.type = "toaster";
  c.heartbeat = Millis(1);
  c.labels = {{"bad key!", "v"}};
  auto st = ValidateNodeConfig(c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cloud must be set"), std::string::npos);
  EXPECT_NE(st.message().find("type"), std::string::npos);
  EXPECT_NE(st.message().find("heartbeat"), std::string::npos);
  EXPECT_NE(st.message().find("bad key!"), std::string::npos) << "bad labels fail at start";
}

TEST(NodeConfig, LabelList) {
  auto l = ParseLabelList("a=b,c=d,e=");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->at("a"), "b");
  EXPECT_EQ(l->at("e"), "");
  EXPECT_FALSE(ParseLabelList("a").ok());
  EXPECT_FALSE(ParseLabelList("=b").ok());
}

}  // namespace
}  // namespace verge::node
