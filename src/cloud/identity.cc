#include "cloud/identity.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>

#include "common/fs.h"
#include "common/sysinfo.h"

namespace verge::cloud {

Result<CloudIdentity> LoadOrCreateIdentity(const std::string& data_dir,
                                           const std::vector<std::string>& names) {
  std::string pki_dir = data_dir + "/pki";
  VERGE_RETURN_IF_ERROR(MakeDirs(pki_dir));
  std::string crt = pki_dir + "/ca.crt", key = pki_dir + "/ca.key";
  std::optional<pki::CertificateAuthority> ca;
  if (FileExists(crt) || FileExists(key)) {
    VERGE_ASSIGN_OR_RETURN(auto cert_pem, ReadFile(crt));
    VERGE_ASSIGN_OR_RETURN(auto key_pem, ReadFile(key));
    auto loaded = pki::CertificateAuthority::Load(cert_pem, key_pem);
    if (!loaded.ok()) return loaded.status().Wrap("CA in " + pki_dir + " is unusable");
    ca.emplace(std::move(loaded).value());
  } else {
    VERGE_ASSIGN_OR_RETURN(auto created, pki::CertificateAuthority::Create("Verge Cloud CA", 3650));
    VERGE_RETURN_IF_ERROR(WriteFileAtomic(key, created.key_pem(), 0600));
    VERGE_RETURN_IF_ERROR(WriteFileAtomic(crt, created.cert_pem(), 0644));
    ca.emplace(std::move(created));
  }
  VERGE_ASSIGN_OR_RETURN(auto fp, pki::Fingerprint(ca->cert_pem()));

  std::vector<std::string> dns = {"localhost"};
  if (auto h = Hostname(); !h.empty()) dns.push_back(h);
  std::vector<std::string> ips = LocalAddresses(/*include_loopback=*/true);
  for (const auto& n : names) {
    in6_addr a6{};
    in_addr a4{};
    bool is_ip =
        inet_pton(AF_INET, n.c_str(), &a4) == 1 || inet_pton(AF_INET6, n.c_str(), &a6) == 1;
    auto& list = is_ip ? ips : dns;
    if (!n.empty() && std::find(list.begin(), list.end(), n) == list.end()) list.push_back(n);
  }
  VERGE_ASSIGN_OR_RETURN(auto server_key, pki::GenerateKey());
  VERGE_ASSIGN_OR_RETURN(auto server_cert, ca->IssueServerCert(server_key.private_key_pem,
                                                               "verge-cloud", dns, ips, 825));
  return CloudIdentity{std::move(*ca), fp, server_cert + ca->cert_pem(),
                       server_key.private_key_pem};
}

}  // namespace verge::cloud
