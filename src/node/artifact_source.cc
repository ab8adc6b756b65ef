#include "node/artifact_source.h"

#include "common/https_client.h"

namespace verge::node {

Result<std::string> CloudArtifactSource::Fetch(const std::string& sha256) {
  auto id = identity_();
  if (!id) return Error(Code::kUnavailable, "the node has not joined its cloud yet");
  http::ClientTls tls;
  tls.ca_pem = id->ca_pem;
  tls.cert_pem = id->cert_pem;
  tls.key_pem = id->key_pem;
  // Large images on a slow uplink take minutes; the call runs on the apps thread only.
  http::HttpsClient client(id->cloud, tls, std::chrono::minutes(10));
  VERGE_ASSIGN_OR_RETURN(auto r, client.Do("GET", "/v1/artifacts/" + sha256));
  if (r.response.status != 200) {
    std::string detail = r.response.body.substr(0, 300);
    Code code = r.response.status == 404 ? Code::kNotFound : Code::kUnavailable;
    return Error(code, "fetching artifact sha256:{}: HTTP {}: {}", sha256, r.response.status,
                 detail);
  }
  return std::move(r.response.body);
}

}  // namespace verge::node
