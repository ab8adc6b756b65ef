// Label syntax, shared by the cloud API and the node's own configuration so that a label the
// node is configured with is rejected at start rather than dropped later by the cloud.
// Thread-safety: pure functions.
#pragma once

#include <string_view>

#include "common/status.h"

namespace verge {

// Kubernetes' rules: key [prefix/]name, name 1-63 characters of [A-Za-z0-9._-] starting and
// ending alphanumeric, prefix a DNS subdomain; value at most 63 of the same, or empty.
Status ValidateLabel(std::string_view key, std::string_view value);

}  // namespace verge
