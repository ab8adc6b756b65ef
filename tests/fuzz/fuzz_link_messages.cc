// Wire messages from untrusted peers: link frames through the cloud's stream handler (as an
// authenticated node would send them), and join requests through the join handler.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "cloud/api.h"
#include "cloud/link_service.h"
#include "cloud/store_sqlite.h"

namespace {

class NullStream : public verge::cloud::LinkStream {
 public:
  void Send(std::string) override {}
  void Close() override {}
};

struct World {
  verge::FakeClock clock;
  std::unique_ptr<verge::cloud::SqliteStore> store =
      std::move(verge::cloud::SqliteStore::Open(":memory:")).value();
  verge::cloud::Registry registry{*store, clock, {}};
  verge::cloud::TelemetryWriter telemetry{*store};
  verge::cloud::LinkService link{registry, *store, telemetry, clock};
  verge::pki::CertificateAuthority ca =
      std::move(verge::pki::CertificateAuthority::Create("fuzz", 10)).value();
  verge::cloud::TokenService tokens{*store, clock, "00"};
  verge::cloud::JoinService join{registry, tokens, ca, 1};
  World() { (void)registry.AddJoined("fuzz-node", "01", 0, "ip"); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* w = new World();
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto conn = w->link.Open(std::make_shared<NullStream>(), {"fuzz-node", "01", "ip"});
  // Frames split at 0xFF bytes: a Hello followed by whatever comes next.
  size_t start = 0;
  for (size_t i = 0; i <= bytes.size(); ++i) {
    if (i == bytes.size() || static_cast<unsigned char>(bytes[i]) == 0xff) {
      conn->OnMessage(bytes.substr(start, i - start));
      start = i + 1;
    }
  }
  conn->OnClosed("fuzz");
  // Uplink batches that passed validation are stored, so the queue never grows across runs.
  while (w->telemetry.CommitPending() > 0) {
  }
  for (;;) {
    auto compacted = w->telemetry.Compact();
    if (!compacted.ok() || *compacted == 0) break;
  }
  verge::http::Request req{"POST", "/v1/join", "/v1/join", {}, {}, std::string(bytes), "ip"};
  (void)w->join.Handle(req);
  return 0;
}
