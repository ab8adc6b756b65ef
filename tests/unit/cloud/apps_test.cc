// Apps in the cloud without a network: the document, placements on the nodes the registry holds,
// the desired state a node gets, status aggregation, rolling updates with maxUnavailable,
// automatic rollback on a failing replica, undo, artifacts, and the REST API.
#include "cloud/apps.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "api_fixture.h"
#include "cloud/app_document.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

json AppDoc(const std::string& name, const json& spec) {
  return {
      {"apiVersion", "verge/v1"}, {"kind", "App"}, {"metadata", {{"name", name}}}, {"spec", spec}};
}

json NativeSpec(const std::string& version, int replicas, const json& placement = json::object()) {
  return {{"type", "native"},
          {"version", version},
          {"replicas", replicas},
          {"command", {"/bin/sh", "-c", "sleep 1000"}},
          {"resources", {{"cpu", "100m"}, {"memory", "64Mi"}}},
          {"placement", placement},
          {"rollout", {{"maxUnavailable", 1}, {"progressDeadlineSeconds", 300}}}};
}

TEST(AppDocument, NamesEveryProblem) {
  auto bad = ParseAppDocument(R"({"apiVersion": "v2", "kind": "Rule", "metadata": {"name": "x"},
                                  "spec": {"type": "native"}})",
                              "y");
  ASSERT_FALSE(bad.ok());
  const std::string& m = bad.status().message();
  EXPECT_NE(m.find("apiVersion"), std::string::npos) << m;
  EXPECT_NE(m.find("kind"), std::string::npos) << m;
  EXPECT_NE(m.find("does not match the name in the URL"), std::string::npos) << m;
  EXPECT_NE(m.find("command"), std::string::npos) << "native needs a command: " << m;
  EXPECT_FALSE(ParseAppDocument("[1]", "x").ok());
  EXPECT_FALSE(ParseAppDocument("{", "x").ok());
}

TEST(AppDocument, WorkloadCarriesTheSpecOfItsRevision) {
  auto doc = ParseAppDocument(AppDoc("web", NativeSpec("1.2", 1)).dump(), "web");
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  DesiredWorkload w{{"web", 4, "n1", 7}, AppSpecToJson(doc->spec)};
  v1::Workload out;
  ASSERT_TRUE(WorkloadToProto(w, &out).ok());
  EXPECT_EQ(out.id(), "web-4");
  EXPECT_EQ(out.revision(), 7u);
  EXPECT_EQ(out.version(), "1.2");
  EXPECT_EQ(out.type(), "native");
  EXPECT_EQ(out.command_size(), 3);
  EXPECT_EQ(out.resources().cpu_millicores(), 100u);
  EXPECT_EQ(out.resources().memory_mb(), 64u);
}

class AppServiceTest : public CloudApiTest {
 protected:
  void AddNode(const std::string& name, const Labels& labels) {
    ASSERT_TRUE(registry_->AddJoined(name, "serial-" + name, 0, "ip").ok());
    NodeReport r;
    r.labels = labels;
    r.capacity.cpu_millicores = 2000;
    r.capacity.memory_mb = 1024;
    ASSERT_TRUE(registry_->OnConnected(name, r, "ip").ok());
  }
  json Get(const std::string& name) {
    auto r = Call("GET", "/api/v1/apps/" + name);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }
  // What node `node` reports about each of its replicas of `app`.
  void Report(const std::string& node, const std::string& status, bool ready,
              const std::string& error = "") {
    auto placements = *store_->ListPlacements("");
    Store::StateReport rep;
    rep.node = node;
    rep.reported_ms = clock_.WallMs();
    rep.has_workloads = true;
    for (const auto& p : placements) {
      if (p.node != node) continue;
      WorkloadStatusRecord w;
      w.node = node;
      w.id = WorkloadId(p.app, p.replica);
      w.app = p.app;
      w.revision = p.revision;
      w.status = status;
      w.ready = ready;
      w.last_error = error;
      rep.workloads.push_back(w);
    }
    ASSERT_TRUE(store_->UpdateStateReports(std::span(&rep, 1)).ok());
  }
  std::map<std::string, uint64_t> Revisions() {
    std::map<std::string, uint64_t> out;
    auto placements = store_->ListPlacements("web");
    EXPECT_TRUE(placements.ok());
    for (const auto& p : *placements) out[p.node] = p.revision;
    return out;
  }
};

TEST_F(AppServiceTest, ReplicasGoOnlyToMatchingNodesAndReachTheirDesiredState) {
  AddNode("e1", {{"role", "edge"}});
  AddNode("e2", {{"role", "edge"}});
  AddNode("c1", {{"role", "core"}});
  auto r = Call(
      "PUT", "/api/v1/apps/web",
      AppDoc("web",
             NativeSpec("1", 2, {{"nodeSelector", {{"role", "edge"}}}, {"antiAffinity", {"web"}}}))
          .dump());
  ASSERT_EQ(r.status, 201) << r.body;
  json app = json::parse(r.body);
  EXPECT_EQ(app["result"], "created");
  EXPECT_EQ(app["replicas"], 2);
  EXPECT_EQ(app["readyReplicas"], 0);
  std::set<std::string> nodes;
  for (const auto& p : app["placements"]) {
    nodes.insert(p["node"].get<std::string>());
    EXPECT_EQ(p["status"], "pending");
  }
  EXPECT_EQ(nodes, (std::set<std::string>{"e1", "e2"}));

  auto ds = store_->GetDesiredState("e1", {{"role", "edge"}});
  ASSERT_TRUE(ds.ok());
  ASSERT_EQ(ds->workloads.size(), 1u);
  EXPECT_EQ(ds->workloads[0].placement.app, "web");
  EXPECT_GT(ds->version, 0u);
  EXPECT_TRUE(store_->GetDesiredState("c1", {{"role", "core"}})->workloads.empty());

  // The same document again changes nothing.
  auto again = Call(
      "PUT", "/api/v1/apps/web",
      AppDoc("web",
             NativeSpec("1", 2, {{"nodeSelector", {{"role", "edge"}}}, {"antiAffinity", {"web"}}}))
          .dump());
  EXPECT_EQ(json::parse(again.body)["result"], "unchanged");

  Report("e1", "ready", true);
  Report("e2", "running", false);
  app = Get("web");
  EXPECT_EQ(app["readyReplicas"], 1);

  // A new node that matches takes nothing from nodes that still qualify.
  AddNode("e3", {{"role", "edge"}});
  apps_->Tick();
  EXPECT_EQ(Revisions().size(), 2u);
  EXPECT_FALSE(Revisions().contains("e3"));

  // Explain: the core node is filtered out by the selector.
  auto ex = Call("GET", "/api/v1/apps/web/explain");
  ASSERT_EQ(ex.status, 200) << ex.body;
  bool saw_core = false;
  json explained = json::parse(ex.body);
  for (const auto& n : explained["nodes"]) {
    if (n["node"] != "c1") continue;
    saw_core = true;
    EXPECT_FALSE(n["feasible"].get<bool>());
    EXPECT_NE(n["reason"].get<std::string>().find("role"), std::string::npos) << n;
  }
  EXPECT_TRUE(saw_core);

  ASSERT_EQ(Call("DELETE", "/api/v1/apps/web").status, 200);
  EXPECT_TRUE(store_->GetDesiredState("e1", {{"role", "edge"}})->workloads.empty());
  EXPECT_EQ(Call("GET", "/api/v1/apps/web").status, 404);
}

TEST_F(AppServiceTest, RollingUpdateMovesAtMostMaxUnavailableAndCompletes) {
  for (const char* n : {"a", "b", "c"}) AddNode(n, {});
  json placement = {{"antiAffinity", {"web"}}};
  ASSERT_EQ(
      Call("PUT", "/api/v1/apps/web", AppDoc("web", NativeSpec("1", 3, placement)).dump()).status,
      201);
  for (const char* n : {"a", "b", "c"}) Report(n, "ready", true);
  apps_->Tick();
  EXPECT_EQ(Get("web")["rollout"]["state"], "complete");
  EXPECT_EQ(Get("web")["stableRevision"], 1);

  ASSERT_EQ(
      Call("PUT", "/api/v1/apps/web", AppDoc("web", NativeSpec("2", 3, placement)).dump()).status,
      200);
  for (int step = 0; step < 6; ++step) {
    auto revs = Revisions();
    int on_new = 0;
    for (const auto& [node, rev] : revs) on_new += rev == 2 ? 1 : 0;
    // One replica at a time: the new one must be ready before the next moves.
    EXPECT_LE(on_new, step + 1);
    for (const auto& [node, rev] : revs) Report(node, "ready", true);
    apps_->Tick();
  }
  json app = Get("web");
  EXPECT_EQ(app["rollout"]["state"], "complete") << app.dump(2);
  EXPECT_EQ(app["stableRevision"], 2);
  for (const auto& [node, rev] : Revisions()) EXPECT_EQ(rev, 2u) << node;
}

TEST_F(AppServiceTest, AFailingReplicaOfTheNewRevisionRollsTheAppBack) {
  for (const char* n : {"a", "b", "c"}) AddNode(n, {});
  json placement = {{"antiAffinity", {"web"}}};
  Call("PUT", "/api/v1/apps/web", AppDoc("web", NativeSpec("1", 3, placement)).dump());
  for (const char* n : {"a", "b", "c"}) Report(n, "ready", true);
  apps_->Tick();
  Call("PUT", "/api/v1/apps/web", AppDoc("web", NativeSpec("2", 3, placement)).dump());
  auto revs = Revisions();
  std::string moved;
  for (const auto& [node, rev] : revs) {
    if (rev == 2) moved = node;
  }
  ASSERT_FALSE(moved.empty());
  Report(moved, "unhealthy", false, "health check (exec) failed 3 times in a row");
  apps_->Tick();
  json app = Get("web");
  EXPECT_EQ(app["rollout"]["state"], "rolled_back") << app.dump(2);
  EXPECT_EQ(app["revision"], 1);
  EXPECT_NE(app["rollout"]["message"].get<std::string>().find("health check"), std::string::npos);
  for (const auto& [node, rev] : Revisions()) EXPECT_EQ(rev, 1u) << node;

  // Undo goes back to revision 2 on purpose (a new rollout).
  auto undo = Call("POST", "/api/v1/apps/web/rollout/undo?revision=2");
  ASSERT_EQ(undo.status, 200) << undo.body;
  EXPECT_EQ(json::parse(undo.body)["revision"], 2);
  EXPECT_EQ(json::parse(undo.body)["state"], "progressing");
  EXPECT_EQ(Call("POST", "/api/v1/apps/web/rollout/undo?revision=x").status, 400);
}

TEST_F(AppServiceTest, ArtifactsAreContentAddressedAndOnlyNodesFetchThem) {
  auto put = Call("POST", "/api/v1/artifacts?name=tool", "#!/bin/sh\necho hi\n");
  ASSERT_EQ(put.status, 201) << put.body;
  json a = json::parse(put.body);
  std::string sha = a["sha256"];
  EXPECT_EQ(a["ref"], "sha256:" + sha);
  EXPECT_EQ(a["size"], 18);
  // The same bytes again: the same artifact.
  EXPECT_EQ(json::parse(Call("POST", "/api/v1/artifacts", "#!/bin/sh\necho hi\n").body)["sha256"],
            sha);
  EXPECT_EQ(json::parse(Call("GET", "/api/v1/artifacts").body).size(), 1u);
  EXPECT_EQ(Call("POST", "/api/v1/artifacts", "").status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/artifacts/nothex").status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/artifacts/" + std::string(64, 'a')).status, 404);

  // A node fetches it on the link address with its certificate; nobody else.
  AddNode("n1", {});
  auto ca = pki::CertificateAuthority::Create("test CA", 1);
  ASSERT_TRUE(ca.ok());
  JoinService join(*registry_, *tokens_, *ca, 30, artifacts_.get());
  http::Request req;
  req.method = "GET";
  req.target = "/v1/artifacts/" + sha;
  http::ParseTarget(req);
  EXPECT_EQ(join.Handle(req).status, 401);
  req.headers[std::string(http::kPeerHeader)] = "n1 serial-other";
  EXPECT_EQ(join.Handle(req).status, 403);
  req.headers[std::string(http::kPeerHeader)] = "n1 serial-n1";
  auto got = join.Handle(req);
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, "#!/bin/sh\necho hi\n");

  // Garbage collection keeps what a revision names and what is young.
  EXPECT_TRUE(artifacts_->GarbageCollect({sha}, clock_.WallMs() + 1)->empty());
  EXPECT_EQ(artifacts_->GarbageCollect({}, clock_.WallMs())->size(), 0u);
  EXPECT_EQ(artifacts_->GarbageCollect({}, clock_.WallMs() + 1)->size(), 1u);
}

}  // namespace
}  // namespace verge::cloud
