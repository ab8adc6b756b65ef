#include "node/overrides.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

namespace verge::node {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

v1::DesiredState Desired() {
  v1::DesiredState d;
  d.set_version(3);
  auto* r = d.add_rules();
  r->set_name("hot");
  r->set_sql("SELECT * FROM telemetry WHERE temp > 80");
  r->set_actions_json(R"([{"log": {}}])");
  r->set_updated_ms(1'000);
  auto* dev = d.add_devices();
  dev->set_name("boiler");
  dev->set_token_sha256("secret-hash");
  dev->set_updated_ms(1'000);
  auto* m = dev->add_metrics();
  m->set_name("temp");
  m->set_type("float");
  m->set_max(100);
  m->set_unit("C");
  auto* w = d.add_workloads();
  w->set_id("web-0");
  w->set_app("web");
  w->set_revision(1);
  w->set_updated_ms(1'000);
  return d;
}

TEST(Merge3, TakesEachSidesChangesAndLetsTheCloudWinConflicts) {
  json base = {{"a", 1}, {"b", 1}, {"c", {{"x", 1}, {"y", 1}}}};
  json ours = {{"a", 2}, {"b", 1}, {"c", {{"x", 2}, {"y", 1}}}};
  json theirs = {{"a", 1}, {"b", 3}, {"c", {{"x", 5}, {"y", 4}}}};
  std::vector<std::string> conflicts;
  json m = Merge3(base, ours, theirs, conflicts);
  EXPECT_EQ(m, (json{{"a", 2}, {"b", 3}, {"c", {{"x", 5}, {"y", 4}}}}));
  EXPECT_EQ(conflicts, std::vector<std::string>{"c.x"});
}

TEST(Merge3, AddedAndRemovedFields) {
  std::vector<std::string> conflicts;
  json m = Merge3({{"a", 1}}, {{"a", 1}, {"n", 1}}, json::object(), conflicts);
  EXPECT_EQ(m, (json{{"n", 1}}));
  EXPECT_TRUE(conflicts.empty());
}

TEST(Resolve, EachPolicy) {
  Override o;
  o.kind = OverrideKind::kRule;
  o.name = "hot";
  o.at_ms = 5'000;
  o.base = {{"sql", "old"}};
  o.spec = {{"sql", "mine"}};
  json theirs = {{"sql", "old"}};
  EXPECT_EQ(Resolve(o, OverridePolicy::kCloudWins, theirs, 1'000, 0).outcome, Resolution::kDropped);
  EXPECT_EQ(Resolve(o, OverridePolicy::kEdgeWins, json{{"sql", "new"}}, 9'000, 0).outcome,
            Resolution::kKept);
  // Last writer: the cloud's change at 9 s beats the override at 5 s, not one at 1 s.
  EXPECT_EQ(Resolve(o, OverridePolicy::kLastWriterWins, json{{"sql", "new"}}, 9'000, 0).outcome,
            Resolution::kDropped);
  EXPECT_EQ(Resolve(o, OverridePolicy::kLastWriterWins, theirs, 1'000, 0).outcome,
            Resolution::kKept);
  // The node's clock runs 5 s behind the cloud's: its 5 s is the cloud's 10 s.
  EXPECT_EQ(Resolve(o, OverridePolicy::kLastWriterWins, json{{"sql", "new"}}, 9'000, 5'000).outcome,
            Resolution::kKept);
  auto merged = Resolve(o, OverridePolicy::kMerge, theirs, 9'000, 0);
  EXPECT_EQ(merged.outcome, Resolution::kMerged);
  EXPECT_EQ(merged.spec, o.spec);
  auto conflict = Resolve(o, OverridePolicy::kMerge, json{{"sql", "new"}}, 9'000, 0);
  EXPECT_EQ(conflict.outcome, Resolution::kDropped);
  EXPECT_NE(conflict.why.find("sql"), std::string::npos) << conflict.why;
  // Gone from the cloud: dropped under every policy.
  EXPECT_EQ(Resolve(o, OverridePolicy::kEdgeWins, std::nullopt, 0, 0).outcome,
            Resolution::kDropped);
}

struct Store {
  fs::path dir;
  std::unique_ptr<OverrideStore> s;
  Store() {
    dir = fs::temp_directory_path() / ("verge-ovr-" + std::to_string(std::random_device{}()));
    fs::create_directories(dir);
    Reopen();
  }
  ~Store() { fs::remove_all(dir); }
  void Reopen() {
    s.reset();
    auto opened = OverrideStore::Open((dir / "overrides.json").string());
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    s = std::move(*opened);
  }
  Override Put(OverrideKind kind, const std::string& name, json spec, int64_t at = 5'000) {
    Override o;
    o.kind = kind;
    o.name = name;
    o.origin = "local-api";
    o.at_ms = at;
    o.base = *ItemJson(Desired(), kind, name);
    o.spec = std::move(spec);
    auto saved = s->Put(o);
    EXPECT_TRUE(saved.ok());
    return *saved;
  }
};

TEST(OverrideStore, OverlaysRulesDevicesAndAppsAndSurvivesAReopen) {
  Store st;
  json rule = *ItemJson(Desired(), OverrideKind::kRule, "hot");
  rule["sql"] = "SELECT * FROM telemetry WHERE temp > 90";
  auto r = st.Put(OverrideKind::kRule, "hot", rule);
  json dev = *ItemJson(Desired(), OverrideKind::kDevice, "boiler");
  dev["metrics"]["temp"]["max"] = 120;
  auto d = st.Put(OverrideKind::kDevice, "boiler", dev);
  st.Put(OverrideKind::kApp, "web", {{"stopped", true}});
  EXPECT_LT(r.version, d.version);
  st.Reopen();
  v1::DesiredState eff = st.s->Overlay(Desired());
  EXPECT_EQ(eff.rules(0).sql(), "SELECT * FROM telemetry WHERE temp > 90");
  EXPECT_EQ(eff.devices(0).metrics(0).max(), 120);
  EXPECT_EQ(eff.devices(0).metrics(0).unit(), "C");
  EXPECT_EQ(eff.devices(0).token_sha256(), "secret-hash") << "credentials are never overridden";
  EXPECT_EQ(eff.workloads_size(), 0);
  EXPECT_EQ(st.s->List().size(), 3u);
}

TEST(OverrideStore, ResolvesEachKindByItsPolicyAndReportsEveryOutcome) {
  Store st;
  json rule = *ItemJson(Desired(), OverrideKind::kRule, "hot");
  rule["sql"] = "SELECT * FROM telemetry WHERE temp > 90";
  st.Put(OverrideKind::kRule, "hot", rule);
  json dev = *ItemJson(Desired(), OverrideKind::kDevice, "boiler");
  dev["metrics"]["temp"]["max"] = 120;
  st.Put(OverrideKind::kDevice, "boiler", dev);
  st.Put(OverrideKind::kApp, "web", {{"stopped", true}});

  // Meanwhile the cloud changed the device's unit (after the override) and the rule's SQL
  // (after the override too), and left the app alone.
  v1::DesiredState cloud = Desired();
  cloud.mutable_devices(0)->mutable_metrics(0)->set_unit("K");
  cloud.mutable_devices(0)->set_updated_ms(8'000);
  cloud.mutable_rules(0)->set_sql("SELECT * FROM telemetry WHERE temp > 70");
  cloud.mutable_rules(0)->set_updated_ms(8'000);
  OverridePolicies p;  // rule: last-writer-wins, device: merge, app: last-writer-wins
  auto events = st.s->ResolveAll(cloud, p, 0, 9'000);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 3u);
  std::map<std::string, std::string> by_type;
  for (const auto& e : *events) by_type[e.message().substr(0, e.message().find(" ("))] = e.type();
  EXPECT_EQ(by_type["rule hot"], "override.dropped");
  EXPECT_EQ(by_type["device boiler"], "override.merged");
  EXPECT_EQ(by_type["app web"], "override.kept");

  v1::DesiredState eff = st.s->Overlay(cloud);
  EXPECT_EQ(eff.rules(0).sql(), "SELECT * FROM telemetry WHERE temp > 70");
  EXPECT_EQ(eff.devices(0).metrics(0).max(), 120);
  EXPECT_EQ(eff.devices(0).metrics(0).unit(), "K");
  EXPECT_EQ(eff.workloads_size(), 0);

  // Resolving again against the same cloud state says so again, and changes nothing.
  auto again = st.s->ResolveAll(cloud, p, 0, 10'000);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), 2u);
  // Only overrides whose item changed are resolved for a change sent while connected.
  v1::DesiredState next = cloud;
  next.mutable_workloads(0)->set_revision(2);
  next.mutable_workloads(0)->set_updated_ms(20'000);
  auto changed = st.s->ResolveAll(next, p, 0, 21'000, &cloud);
  ASSERT_TRUE(changed.ok());
  ASSERT_EQ(changed->size(), 1u);
  EXPECT_EQ((*changed)[0].type(), "override.dropped") << (*changed)[0].message();
  EXPECT_EQ(st.s->Overlay(next).workloads_size(), 1);
}

TEST(OverrideStore, RejectsMalformedSpecsAndDamagedFiles) {
  EXPECT_FALSE(ValidateItemJson(OverrideKind::kRule, json{{"sql", 5}}).ok());
  EXPECT_FALSE(ValidateItemJson(OverrideKind::kRule, json{{"bogus", 1}}).ok());
  EXPECT_FALSE(
      ValidateItemJson(OverrideKind::kDevice, json{{"metrics", {{"t", {{"max", "x"}}}}}}).ok());
  EXPECT_FALSE(ValidateItemJson(OverrideKind::kApp, json{{"stopped", "yes"}}).ok());
  EXPECT_TRUE(ValidateItemJson(OverrideKind::kApp, json{{"stopped", true}}).ok());
  Store st;
  std::ofstream(st.dir / "overrides.json") << "{not json";
  auto opened = OverrideStore::Open((st.dir / "overrides.json").string());
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.status().message().find("damaged"), std::string::npos);
}

TEST(OverridePolicies, ParsesAndNamesEveryProblem) {
  auto p = ParseOverridePolicies({{"rule", "edge-wins"}, {"app", "cloud-wins"}});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->rule, OverridePolicy::kEdgeWins);
  EXPECT_EQ(p->device, OverridePolicy::kMerge);
  EXPECT_EQ(p->app, OverridePolicy::kCloudWins);
  auto bad = ParseOverridePolicies({{"rules", "edge-wins"}, {"device", "newest"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rules"), std::string::npos);
  EXPECT_NE(bad.status().message().find("newest"), std::string::npos);
}

}  // namespace
}  // namespace verge::node
