#include "common/bootstrap_token.h"

#include <vector>

namespace verge {
namespace {

bool AllOf(std::string_view s, size_t len, std::string_view alphabet) {
  if (s.size() != len) return false;
  for (char c : s) {
    if (alphabet.find(c) == std::string_view::npos) return false;
  }
  return true;
}

constexpr std::string_view kHex = "0123456789abcdef";
constexpr std::string_view kAlnum = "abcdefghijklmnopqrstuvwxyz0123456789";

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    size_t p = s.find(sep);
    out.push_back(s.substr(0, p));
    if (p == std::string_view::npos) break;
    s.remove_prefix(p + 1);
  }
  return out;
}

}  // namespace

std::string FormatBootstrapToken(const BootstrapTokenParts& p) {
  return "verge1." + p.ca_fingerprint + "." + p.id + "." + p.secret;
}

Result<BootstrapTokenParts> ParseBootstrapToken(std::string_view token) {
  auto parts = Split(token, '.');
  if (parts.size() != 4 || parts[0] != "verge1") {
    return Error(Code::kInvalidArgument,
                 "malformed bootstrap token: expected verge1.<ca-hash>.<id>.<secret> (get one with "
                 "`vergectl token create`)");
  }
  if (!AllOf(parts[1], 64, kHex)) {
    return Error(Code::kInvalidArgument, "malformed bootstrap token: bad CA hash");
  }
  VERGE_ASSIGN_OR_RETURN(auto cred,
                         ParseJoinCredential(std::string(parts[2]) + "." + std::string(parts[3])));
  cred.ca_fingerprint = std::string(parts[1]);
  return cred;
}

Result<BootstrapTokenParts> ParseJoinCredential(std::string_view credential) {
  auto parts = Split(credential, '.');
  if (parts.size() != 2 || !AllOf(parts[0], 6, kAlnum) || !AllOf(parts[1], 16, kAlnum)) {
    return Error(Code::kInvalidArgument, "malformed bootstrap token credential");
  }
  return BootstrapTokenParts{"", std::string(parts[0]), std::string(parts[1])};
}

}  // namespace verge
