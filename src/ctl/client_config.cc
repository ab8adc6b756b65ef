#include "ctl/client_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "common/fs.h"
#include "common/https_client.h"

namespace verge::ctl {
namespace {

constexpr std::string_view kNoConfig =
    "no config: pass --config DIR/vergectl.yaml, set VERGE_CONFIG, or create ~/.verge/config "
    "(verge-cloud writes vergectl.yaml into its data directory)";

std::string Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// An empty variable counts as unset, as a shell user who wrote `VERGE_TOKEN= vergectl` means.
std::optional<std::string> Env(const EnvLookup& env, std::string_view name) {
  auto v = env(name);
  if (!v || Trim(*v).empty()) return std::nullopt;
  return Trim(*v);
}

Result<std::string> ScalarField(const YAML::Node& node, std::string_view key,
                                const std::string& path) {
  // `token:` with nothing after it parses as null; treat it as missing rather than malformed.
  if (node.IsNull()) return std::string();
  if (!node.IsScalar()) {
    return Error(Code::kInvalidArgument, "{}: \"{}\" must be a string", path, key);
  }
  return node.as<std::string>();
}

Result<ClientConfig> ParseYaml(const YAML::Node& root, const std::string& path) {
  ClientConfig cfg;
  cfg.path = path;
  if (root.IsNull()) return cfg;
  if (!root.IsMap()) {
    return Error(Code::kInvalidArgument, "{}: expected a mapping with server, token and ca", path);
  }
  std::string ca_file;
  for (const auto& item : root) {
    std::string key = item.first.as<std::string>();
    std::string* target = nullptr;
    if (key == "server") {
      target = &cfg.server;
    } else if (key == "token") {
      target = &cfg.token;
    } else if (key == "ca") {
      target = &cfg.ca_pem;
    } else if (key == "caFile") {
      target = &ca_file;
    } else {
      return Error(Code::kInvalidArgument,
                   "{}: unknown key \"{}\" (known keys: server, token, ca, caFile)", path, key);
    }
    VERGE_ASSIGN_OR_RETURN(*target, ScalarField(item.second, key, path));
  }
  cfg.server = Trim(cfg.server);
  cfg.token = Trim(cfg.token);
  if (!cfg.server.empty()) cfg.server_source = path;
  if (!cfg.token.empty()) cfg.token_source = path;
  if (!ca_file.empty()) {
    if (!cfg.ca_pem.empty()) {
      return Error(Code::kInvalidArgument, "{}: set either ca or caFile, not both", path);
    }
    // A relative caFile means "next to this config", not "next to wherever vergectl runs".
    std::filesystem::path ca_path(ca_file);
    if (ca_path.is_relative()) ca_path = std::filesystem::path(path).parent_path() / ca_path;
    auto pem = ReadFile(ca_path.string());
    if (!pem.ok()) return pem.status().Wrap(fmt::format("{}: caFile", path));
    cfg.ca_pem = std::move(*pem);
  }
  return cfg;
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

Result<ClientConfig> ParseClientConfig(std::string_view yaml_text, const std::string& path) {
  try {
    return ParseYaml(YAML::Load(std::string(yaml_text)), path);
  } catch (const YAML::Exception& e) {
    return Error(Code::kInvalidArgument, "{}:{}: {}", path, e.mark.line + 1, e.msg);
  }
}

Result<ClientConfig> LoadClientConfig(const ConfigFlags& flags, const EnvLookup& env) {
  std::string path = flags.config_path;
  bool explicit_path = !path.empty();
  bool from_env = false;
  if (!explicit_path) {
    if (auto v = Env(env, "VERGE_CONFIG")) {
      path = *v;
      explicit_path = true;
      from_env = true;
    } else if (auto home = Env(env, "HOME")) {
      path = *home + "/.verge/config";
    }
  }
  if (path.empty() || (!explicit_path && !FileExists(path))) {
    return Status(Code::kFailedPrecondition, std::string(kNoConfig));
  }
  auto text = ReadFile(path);
  if (!text.ok()) {
    return from_env ? text.status().Wrap("$VERGE_CONFIG") : text.status();
  }
  VERGE_ASSIGN_OR_RETURN(ClientConfig cfg, ParseClientConfig(*text, path));

  if (!flags.server.empty()) {
    cfg.server = flags.server;
    cfg.server_source = "--server";
  } else if (auto v = Env(env, "VERGE_SERVER")) {
    cfg.server = *v;
    cfg.server_source = "$VERGE_SERVER";
  }
  if (!flags.token.empty()) {
    cfg.token = Trim(flags.token);
    cfg.token_source = "--token";
  } else if (auto v = Env(env, "VERGE_TOKEN")) {
    cfg.token = *v;
    cfg.token_source = "$VERGE_TOKEN";
  }

  std::vector<std::string> problems;
  if (cfg.server.empty()) {
    problems.push_back(
        fmt::format("no server (set server: in {}, VERGE_SERVER or --server)", path));
  } else if (auto hp = http::SplitHostPort(cfg.server); !hp.ok()) {
    problems.push_back(fmt::format("{} (from {})", hp.status().message(), cfg.server_source));
  }
  if (cfg.token.empty()) {
    problems.push_back(fmt::format("no token (set token: in {}, VERGE_TOKEN or --token)", path));
  }
  if (cfg.ca_pem.empty()) {
    problems.push_back(fmt::format(
        "no CA certificate (set ca: or caFile: in {}); vergectl trusts only the cloud's CA", path));
  } else if (cfg.ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    problems.push_back(fmt::format("the CA in {} is not a PEM certificate", path));
  }
  if (!problems.empty()) {
    std::string msg = problems[0];
    for (size_t i = 1; i < problems.size(); ++i) msg += "; " + problems[i];
    return Status(Code::kInvalidArgument, msg);
  }
  return cfg;
}

}  // namespace verge::ctl
