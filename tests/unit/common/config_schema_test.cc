#include "common/config_schema.h"

#include <gtest/gtest.h>

namespace verge {
namespace {

struct Cfg {
  std::string name = "x";
  Millis every{1000};
  int n = 3;
  std::vector<std::string> list;
  std::map<std::string, std::string> map;
};

ConfigSchema<Cfg> Schema() {
  ConfigSchema<Cfg> s;
  s.Str("name", "A name.", &Cfg::name)
      .Dur("every", "How often.", &Cfg::every)
      .Int("n", "How many.", &Cfg::n, 1, 10)
      .StrList("list", "Some strings.", &Cfg::list)
      .StrMap("map", "Pairs.", &Cfg::map);
  return s;
}

TEST(ConfigSchema, AppliesKnownKeys) {
  Cfg c;
  ASSERT_TRUE(Schema().Parse("name: y\nevery: 5m\nn: 7\nlist: [a, b]\nmap: {k: v}\n", c, "f").ok());
  EXPECT_EQ(c.name, "y");
  EXPECT_EQ(c.every.count(), 300000);
  EXPECT_EQ(c.n, 7);
  EXPECT_EQ(c.list, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.map.at("k"), "v");
}

TEST(ConfigSchema, ReportsEveryErrorAtOnceAndChangesNothing) {
  Cfg c;
  auto st = Schema().Parse("nmae: y\nevery: soon\nn: 70\nlist: 5\n", c, "cfg.yaml");
  ASSERT_FALSE(st.ok());
  const std::string& m = st.message();
  EXPECT_NE(m.find("cfg.yaml"), std::string::npos);
  EXPECT_NE(m.find("unknown setting \"nmae\""), std::string::npos);
  EXPECT_NE(m.find("every"), std::string::npos);
  EXPECT_NE(m.find("between 1 and 10"), std::string::npos);
  EXPECT_NE(m.find("list"), std::string::npos);
  EXPECT_EQ(c.name, "x");
  EXPECT_EQ(c.n, 3);
}

TEST(ConfigSchema, SyntaxErrorsNameTheLine) {
  Cfg c;
  auto st = Schema().Parse("name: [unclosed\n", c, "f");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("line"), std::string::npos);
  EXPECT_FALSE(Schema().Parse("- a\n- b\n", c, "f").ok());
  EXPECT_TRUE(Schema().Parse("", c, "f").ok());
}

TEST(ConfigSchema, PrintedDefaultsParseBackToTheSame) {
  Cfg c;
  c.list = {"a b", "c"};
  c.map = {{"k", "v: w"}};
  std::string text = Schema().Print(c);
  EXPECT_NE(text.find("# How often."), std::string::npos);
  Cfg d;
  ASSERT_TRUE(Schema().Parse(text, d, "printed").ok()) << text;
  EXPECT_EQ(d.list, c.list);
  EXPECT_EQ(d.map, c.map);
  EXPECT_EQ(d.every, c.every);
}

}  // namespace
}  // namespace verge
