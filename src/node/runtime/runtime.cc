#include "node/runtime/runtime.h"

namespace verge::node::runtime {

std::string_view KindName(Kind k) {
  switch (k) {
    case Kind::kNative:
      return "native";
    case Kind::kContainer:
      return "container";
    case Kind::kFunction:
      return "function";
  }
  return "unknown";
}

}  // namespace verge::node::runtime
