// Where vergectl finds its server, admin token and trust anchor. The file is the vergectl.yaml
// that verge-cloud writes into its data directory (keys: server, token, ca or caFile); flags
// and environment variables override single fields of it. The environment is passed in as a
// lookup function so that tests exercise precedence without touching the process environment.
// Thread-safety: plain values and pure functions (LoadClientConfig reads files).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace verge::ctl {

struct ClientConfig {
  std::string server;  // https://host:port of the cloud's API listener
  std::string token;   // admin bearer token
  std::string ca_pem;  // trust anchor for the API's certificate
  // Where each value came from ("--token", "$VERGE_TOKEN", a file path), for error messages
  // that tell the user what to fix.
  std::string path;
  std::string server_source;
  std::string token_source;
};

// What the command line gave; empty means "not given".
struct ConfigFlags {
  std::string config_path;
  std::string server;
  std::string token;
};

using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;

// Reads the real process environment.
EnvLookup ProcessEnv();

// Parses the YAML text of a config file. `path` names the file in messages and anchors a
// relative caFile. Unknown keys are errors, so that a typo ("tokn") is not silently ignored.
// Fields may be missing here: flags and environment can still fill them.
Result<ClientConfig> ParseClientConfig(std::string_view yaml_text, const std::string& path);

// Picks the file (--config, then $VERGE_CONFIG, then ~/.verge/config), reads it, applies
// --server/$VERGE_SERVER and --token/$VERGE_TOKEN over it, and checks that server, token and
// CA are all present, reporting every missing field at once.
Result<ClientConfig> LoadClientConfig(const ConfigFlags& flags, const EnvLookup& env);

}  // namespace verge::ctl
