#include "common/labels.h"

#include <cctype>

namespace verge {
namespace {

bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

bool ValidLabelName(std::string_view s) {
  if (s.empty() || s.size() > 63 || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

bool ValidDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.')) {
      return false;
    }
  }
  return IsAlnum(s.front()) && IsAlnum(s.back());
}

}  // namespace

Status ValidateLabel(std::string_view key, std::string_view value) {
  std::string_view name = key;
  if (auto slash = key.find('/'); slash != std::string_view::npos) {
    if (!ValidDnsSubdomain(key.substr(0, slash))) {
      return Error(Code::kInvalidArgument, "label key \"{}\": bad prefix", key);
    }
    name = key.substr(slash + 1);
  }
  if (!ValidLabelName(name)) {
    return Error(Code::kInvalidArgument,
                 "label key \"{}\" must be 1-63 characters of [A-Za-z0-9._-], starting and "
                 "ending with a letter or digit",
                 key);
  }
  if (!value.empty() && !ValidLabelName(value)) {
    return Error(Code::kInvalidArgument,
                 "label value \"{}\" must be at most 63 characters of [A-Za-z0-9._-], starting "
                 "and ending with a letter or digit",
                 value);
  }
  return Status::Ok();
}

}  // namespace verge
