#include "node/identity.h"

#include <nlohmann/json.hpp>

#include "common/bootstrap_token.h"
#include "common/fs.h"
#include "common/https_client.h"
#include "common/pki.h"
#include "verge/v1/link.pb.h"

namespace verge::node {
namespace {

std::string Dir(const std::string& data_dir) { return data_dir + "/identity"; }

Status Damaged(const std::string& data_dir, const std::string& why) {
  return Error(Code::kDataLoss,
               "node identity in {} is damaged ({}); to join again, stop the node, delete that "
               "directory, delete the node in the cloud (vergectl nodes delete NAME) and start "
               "with a bootstrap token",
               Dir(data_dir), why);
}

}  // namespace

Result<NodeIdentity> LoadIdentity(const std::string& data_dir, const Clock& clock) {
  std::string dir = Dir(data_dir);
  if (!FileExists(dir + "/identity.json")) {
    return Error(Code::kNotFound, "node has not joined yet ({} has no identity.json)", dir);
  }
  NodeIdentity id;
  auto meta = ReadFile(dir + "/identity.json");
  if (!meta.ok()) return Damaged(data_dir, meta.status().message());
  auto j = nlohmann::json::parse(*meta, nullptr, false);
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string() || !j.contains("cloud") ||
      !j["cloud"].is_string()) {
    return Damaged(data_dir, "identity.json is not valid");
  }
  id.name = j["name"].get<std::string>();
  id.cloud = j["cloud"].get<std::string>();
  for (auto [file, field] :
       {std::pair{"node.key", &id.key_pem}, {"node.crt", &id.cert_pem}, {"ca.crt", &id.ca_pem}}) {
    auto text = ReadFile(dir + "/" + file);
    if (!text.ok()) return Damaged(data_dir, text.status().message());
    *field = std::move(*text);
  }
  if (auto st = pki::CheckKeyMatchesCert(id.key_pem, id.cert_pem); !st.ok()) {
    return Damaged(data_dir, "node.key and node.crt: " + st.message());
  }
  auto info = pki::InspectCertificate(id.cert_pem);
  if (!info.ok()) return Damaged(data_dir, "node.crt: " + info.status().message());
  if (info->common_name != id.name) {
    return Damaged(data_dir,
                   "node.crt is for \"" + info->common_name + "\", not \"" + id.name + "\"");
  }
  if (auto st = pki::VerifyIssuedBy(id.ca_pem, id.cert_pem, clock.WallMs()); !st.ok()) {
    if (clock.WallMs() > info->not_after_ms) {
      return Error(Code::kFailedPrecondition,
                   "the node certificate expired at {}; delete the node in the cloud and {} to "
                   "join again",
                   FormatTimeMs(info->not_after_ms), dir);
    }
    return Damaged(data_dir, "node.crt does not verify against ca.crt: " + st.message());
  }
  id.cert_serial = info->serial_hex;
  id.cert_not_after_ms = info->not_after_ms;
  return id;
}

Result<NodeIdentity> Join(const std::string& data_dir, const std::string& cloud,
                          const std::string& token, const std::string& name, const Clock& clock) {
  VERGE_ASSIGN_OR_RETURN(auto parts, ParseBootstrapToken(token));
  // First contact: fetch the CA without trusting anyone, then pin it to the token's hash.
  http::HttpsClient insecure(cloud, http::ClientTls{"", "", "", true});
  VERGE_ASSIGN_OR_RETURN(auto ca_res, insecure.Do("GET", "/v1/ca"));
  if (ca_res.response.status != 200) return http::StatusFromResponse(ca_res.response);
  const std::string& ca_pem = ca_res.response.body;
  auto fp = pki::Fingerprint(ca_pem);
  if (!fp.ok() || *fp != parts.ca_fingerprint) {
    return Error(Code::kPermissionDenied,
                 "the cloud at {} presented CA sha256:{}, but the bootstrap token expects "
                 "sha256:{}: refusing to join (wrong cloud, wrong token, or an interceptor)",
                 cloud, fp.ok() ? *fp : "(unreadable)", parts.ca_fingerprint);
  }
  VERGE_ASSIGN_OR_RETURN(auto key, pki::GenerateKey());
  VERGE_ASSIGN_OR_RETURN(auto csr, pki::MakeCsr(key.private_key_pem, name));
  v1::JoinRequest req;
  req.set_token(parts.Credential());
  req.set_node_name(name);
  req.set_csr_pem(csr);
  // From here on the cloud must prove it holds the pinned CA's server certificate.
  http::HttpsClient client(cloud, http::ClientTls{ca_pem, "", "", false});
  VERGE_ASSIGN_OR_RETURN(auto res, client.Do("POST", "/v1/join", req.SerializeAsString(),
                                             {{"Content-Type", "application/x-protobuf"}}));
  if (res.response.status != 200) {
    return http::StatusFromResponse(res.response).Wrap("the cloud refused the join");
  }
  v1::JoinResponse jr;
  if (!jr.ParseFromString(res.response.body)) {
    return Error(Code::kUnavailable, "the cloud's join response is not a JoinResponse");
  }
  if (jr.ca_pem() != ca_pem) {
    return Error(Code::kPermissionDenied,
                 "the join response names a different CA than the pinned one");
  }
  std::string dir = Dir(data_dir);
  VERGE_RETURN_IF_ERROR(MakeDirs(dir));
  VERGE_RETURN_IF_ERROR(WriteFileAtomic(dir + "/node.key", key.private_key_pem, 0600));
  VERGE_RETURN_IF_ERROR(WriteFileAtomic(dir + "/node.crt", jr.certificate_pem(), 0644));
  VERGE_RETURN_IF_ERROR(WriteFileAtomic(dir + "/ca.crt", ca_pem, 0644));
  nlohmann::json meta = {
      {"name", name}, {"cloud", cloud}, {"joinedAt", FormatTimeMs(clock.WallMs())}};
  // Written last: its presence means the identity is complete.
  VERGE_RETURN_IF_ERROR(WriteFileAtomic(dir + "/identity.json", meta.dump(2) + "\n", 0644));
  return LoadIdentity(data_dir, clock);
}

}  // namespace verge::node
