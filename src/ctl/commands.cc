#include "ctl/commands.h"

#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <thread>
#include <tuple>

#include "common/clock.h"
#include "common/duration.h"
#include "common/fs.h"
#include "common/http.h"
#include "common/https_client.h"

namespace verge::ctl {
namespace {

// The cloud's REST API with the admin token; every reply body is JSON.
class ApiClient {
 public:
  explicit ApiClient(ClientConfig cfg)
      : cfg_(std::move(cfg)), http_(cfg_.server, http::ClientTls{cfg_.ca_pem, "", "", false}) {}

  Result<Json> Call(std::string_view method, const std::string& target,
                    const std::optional<Json>& body = std::nullopt) {
    return CallRaw(method, target, body ? body->dump() : "", "application/json");
  }

  // A request whose body is not JSON (an artifact's bytes).
  Result<Json> CallRaw(std::string_view method, const std::string& target, std::string body,
                       const std::string& content_type) {
    auto result = http_.Do(method, target, std::move(body),
                           {{"Authorization", "Bearer " + cfg_.token},
                            {"Accept", "application/json"},
                            {"Content-Type", content_type}});
    if (!result.ok()) {
      return result.status().Wrap(fmt::format("cannot reach verge-cloud at {}", cfg_.server));
    }
    const http::Response& resp = result->response;
    if (resp.status < 200 || resp.status >= 300) {
      Status st = http::StatusFromResponse(resp);
      if (st.code() == Code::kUnauthenticated) {
        // The server cannot know which of the three places the token came from; we can.
        return Error(st.code(), "{} (the token from {} was refused by {})", st.message(),
                     cfg_.token_source, cfg_.server);
      }
      return st;
    }
    Json j = Json::parse(resp.body, nullptr, false);
    if (j.is_discarded()) {
      return Error(Code::kInternal, "{} answered {} {} with a body that is not JSON", cfg_.server,
                   method, target);
    }
    return j;
  }

 private:
  ClientConfig cfg_;
  http::HttpsClient http_;
};

// What a command needs while it runs.
struct Context {
  ApiClient* api = nullptr;  // null for commands that do not talk to the cloud
  OutputFormat format = OutputFormat::kTable;
  int64_t now_ms = 0;
  std::ostream& out;
  std::ostream& err;
  std::istream& in;
};

struct Command {
  bool needs_api = true;
  std::function<Status(Context&)> run;
};

// Prints `data` in the chosen format; `table` renders it for people. An empty list prints
// nothing on stdout, so scripts see no rows, and says so on stderr, as kubectl does.
void Print(Context& ctx, const Json& data, const std::function<std::string(const Json&)>& table,
           std::string_view empty_what = "") {
  switch (ctx.format) {
    case OutputFormat::kJson:
      ctx.out << ToJson(data);
      return;
    case OutputFormat::kYaml:
      ctx.out << ToYaml(data);
      return;
    case OutputFormat::kTable:
      if (data.is_array() && data.empty()) {
        if (!empty_what.empty()) ctx.err << "No " << empty_what << " found.\n";
        return;
      }
      ctx.out << table(data);
      return;
  }
}

std::string PathPart(std::string_view s) { return http::UrlEncode(s); }

constexpr const char* kGlobalOptionsHelp =
    "Global options (before or after the subcommand): --config FILE, -o table|json|yaml, "
    "--server URL, --token TOKEN; see vergectl --help.\n";

// Flag values that are wrong are usage errors (exit 2), caught before any request is sent.
CLI::Validator DurationValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        auto d = ParseDuration(value);
        return d.ok() ? "" : d.status().message();
      },
      "DURATION");
}

// Holds the parser and every value it fills; a subcommand's callback picks the command.
class Cli {
 public:
  Cli() : app_("vergectl: operate a Verge edge cloud", "vergectl") { Define(); }

  int Main(int argc, const char* const* argv, const EnvLookup& env, std::ostream& out,
           std::ostream& err, std::istream& in) {
    try {
      app_.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      // CLI11 gives each parse error its own code (106, 109, ...); callers only need to know
      // "usage error", and 2 is what shells and kubectl use for it.
      int code = app_.exit(e, out, err);
      return code == 0 ? 0 : 2;
    }
    if (!command_.run) return Fail(err, Status(Code::kInternal, "no command selected"));
    auto format = ParseOutputFormat(output_);
    if (!format.ok()) return Fail(err, format.status());
    Context ctx{nullptr, *format, SystemClock().WallMs(), out, err, in};
    std::optional<ApiClient> api;
    if (command_.needs_api) {
      auto cfg = LoadClientConfig(flags_, env);
      if (!cfg.ok()) return Fail(err, cfg.status());
      api.emplace(std::move(*cfg));
      ctx.api = &*api;
    }
    if (auto st = command_.run(ctx); !st.ok()) return Fail(err, st);
    return 0;
  }

 private:
  static int Fail(std::ostream& err, const Status& st) {
    err << "vergectl: " << st.message() << "\n";
    return 1;
  }

  void Define() {
    // Inherited by every subcommand created below, so that global options are accepted
    // after the subcommand too: `vergectl nodes list -o json`.
    app_.fallthrough();
    app_.require_subcommand(1);
    app_.add_option("--config", flags_.config_path,
                    "vergectl config file (default: $VERGE_CONFIG, then ~/.verge/config)");
    app_.add_option("-o,--output", output_, "Output format")
        ->check(CLI::IsMember({"table", "json", "yaml"}))
        ->capture_default_str();
    app_.add_option("--server", flags_.server, "API address https://HOST:PORT (or $VERGE_SERVER)");
    app_.add_option("--token", flags_.token, "Admin API token (or $VERGE_TOKEN)");
    DefineNodes();
    DefineToken();
    DefineDevices();
    DefineData();
    DefineApply();
    DefineRules();
    DefineAlerts();
    DefineApps();
    DefineArtifacts();
    DefineLogs();
    // Subcommand help does not list the inherited options; say that they exist.
    for (CLI::App* group : app_.get_subcommands([](CLI::App*) { return true; })) {
      for (CLI::App* sub : group->get_subcommands([](CLI::App*) { return true; })) {
        sub->footer(kGlobalOptionsHelp);
      }
      group->footer(kGlobalOptionsHelp);
    }

    app_.add_subcommand("status", "Show node counts and link statistics")->callback([this] {
      Select(true, [](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", "/api/v1/status"));
        Print(ctx, j, KeyValueLines);
        return Status::Ok();
      });
    });
    app_.add_subcommand("version", "Print vergectl's version")->callback([this] {
      Select(false, [](Context& ctx) -> Status {
        Json j = {{"clientVersion", VERGE_VERSION}};
        Print(ctx, j, [](const Json&) { return std::string("vergectl " VERGE_VERSION "\n"); });
        return Status::Ok();
      });
    });
  }

  void DefineNodes() {
    CLI::App* nodes = app_.add_subcommand("nodes", "List, inspect, label and delete nodes");
    nodes->alias("node");
    nodes->require_subcommand(1);

    CLI::App* list = nodes->add_subcommand("list", "List nodes");
    list->alias("ls");
    list->add_option("--status", status_filter_, "Only nodes with this status")
        ->check(CLI::IsMember({"online", "degraded", "offline"}));
    list->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        std::string target = "/api/v1/nodes";
        if (!status_filter_.empty()) target += "?status=" + http::UrlEncode(status_filter_);
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", target));
        Print(
            ctx, j, [&](const Json& d) { return NodesTable(d, ctx.now_ms); }, "nodes");
        return Status::Ok();
      });
    });

    CLI::App* get = nodes->add_subcommand("get", "Show one node");
    get->add_option("NAME", name_, "Node name")->required();
    get->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", "/api/v1/nodes/" + PathPart(name_)));
        Print(ctx, j, [&](const Json& d) { return NodesTable(d, ctx.now_ms); });
        return Status::Ok();
      });
    });

    CLI::App* label = nodes->add_subcommand("label", "Set (k=v) or remove (k-) labels of a node");
    label->add_option("NAME", name_, "Node name")->required();
    label->add_option("LABELS", label_args_, "k=v to set, k- to remove")->required();
    label->callback([this] {
      // Malformed arguments are a usage error (exit 2), like any other bad argument.
      auto labels = ParseLabelArgs(label_args_);
      if (!labels.ok()) throw CLI::ValidationError("LABELS", labels.status().message());
      Select(true, [this, body = Json{{"labels", *labels}}](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j,
                               ctx.api->Call("PATCH", "/api/v1/nodes/" + PathPart(name_), body));
        Print(ctx, j, [&](const Json& d) { return NodesTable(d, ctx.now_ms); });
        return Status::Ok();
      });
    });

    CLI::App* del =
        nodes->add_subcommand("delete", "Decommission a node and revoke its certificate");
    del->alias("rm");
    del->add_option("NAME", name_, "Node name")->required();
    del->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("DELETE", "/api/v1/nodes/" + PathPart(name_)));
        Print(ctx, j, [&](const Json& d) {
          return fmt::format("node \"{}\" decommissioned; certificate {} revoked\n", name_,
                             d.value("revokedCertificate", "(none)"));
        });
        return Status::Ok();
      });
    });

    CLI::App* events = nodes->add_subcommand("events", "Show a node's events, oldest first");
    events->add_option("NAME", name_, "Node name")->required();
    events->add_option("--limit", limit_, "Most recent events to show (server default: 100)")
        ->check(CLI::Range(1, 10000));
    events->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        std::string target = "/api/v1/nodes/" + PathPart(name_) + "/events";
        if (limit_) target += fmt::format("?limit={}", *limit_);
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", target));
        Print(ctx, j, EventsTable, "events");
        return Status::Ok();
      });
    });
  }

  void DefineToken() {
    CLI::App* token = app_.add_subcommand("token", "Create, list and revoke bootstrap tokens");
    token->alias("tokens");
    token->require_subcommand(1);

    CLI::App* create =
        token->add_subcommand("create", "Create a bootstrap token for joining nodes");
    create->add_option("--ttl", ttl_, "Lifetime, e.g. 1h, 24h, 7d; 0s never expires")
        ->check(DurationValidator())
        ->capture_default_str();
    create->add_option("--description", description_, "What the token is for");
    create->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        Json body = {{"ttl", ttl_}};
        if (!description_.empty()) body["description"] = description_;
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("POST", "/api/v1/tokens", body));
        Print(ctx, j, TokenCreatedText);
        return Status::Ok();
      });
    });

    CLI::App* list = token->add_subcommand("list", "List bootstrap tokens");
    list->alias("ls");
    list->callback([this] {
      Select(true, [](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", "/api/v1/tokens"));
        Print(ctx, j, TokensTable, "tokens");
        return Status::Ok();
      });
    });

    CLI::App* revoke = token->add_subcommand("revoke", "Revoke a bootstrap token");
    revoke->add_option("ID", token_id_, "Token id (see token list)")->required();
    revoke->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j,
                               ctx.api->Call("DELETE", "/api/v1/tokens/" + PathPart(token_id_)));
        Print(ctx, j, [&](const Json&) { return fmt::format("token {} revoked\n", token_id_); });
        return Status::Ok();
      });
    });
  }

  void DefineDevices() {
    CLI::App* devices = app_.add_subcommand("devices", "Declare, list, inspect and delete devices");
    devices->alias("device");
    devices->require_subcommand(1);

    CLI::App* add = devices->add_subcommand(
        "add", "Declare a device on a node; prints its token, shown only this once");
    add->add_option("NAME", name_, "Device name")->required();
    add->add_option("--node", node_, "Node the device sends to");
    add->add_option("--labels", labels_csv_, "Labels: k=v,k2=v2");
    add->add_option(
        "-f,--file", file_,
        "YAML or JSON with the device's fields (metrics, modbus, ...; see docs/api.md)");
    add->callback([this] {
      auto labels =
          labels_csv_.empty() ? Result<Json>(Json::object()) : ParseLabelList(labels_csv_);
      if (!labels.ok()) throw CLI::ValidationError("--labels", labels.status().message());
      Select(true, [this, labels = *labels](Context& ctx) -> Status {
        std::optional<Json> doc;
        if (!file_.empty()) {
          VERGE_ASSIGN_OR_RETURN(std::string text, ReadFile(file_));
          VERGE_ASSIGN_OR_RETURN(doc, ParseDocument(text, file_));
        }
        VERGE_ASSIGN_OR_RETURN(Json body, DeviceBody(name_, node_, labels, doc));
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("POST", "/api/v1/devices", body));
        Print(ctx, j, [](const Json& d) { return DeviceTokenText(d, false); });
        return Status::Ok();
      });
    });

    CLI::App* list = devices->add_subcommand("list", "List devices");
    list->alias("ls");
    list->add_option("--node", node_, "Only the devices of this node");
    list->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        std::string target = "/api/v1/devices";
        if (!node_.empty()) target += "?node=" + http::UrlEncode(node_);
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", target));
        Print(
            ctx, j, [&](const Json& d) { return DevicesTable(d, ctx.now_ms); }, "devices");
        return Status::Ok();
      });
    });

    CLI::App* get = devices->add_subcommand("get", "Show one device");
    get->add_option("NAME", name_, "Device name")->required();
    get->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", "/api/v1/devices/" + PathPart(name_)));
        Print(ctx, j, [&](const Json& d) { return DevicesTable(d, ctx.now_ms); });
        return Status::Ok();
      });
    });

    CLI::App* del = devices->add_subcommand("delete", "Delete a device");
    del->alias("rm");
    del->add_option("NAME", name_, "Device name")->required();
    del->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j,
                               ctx.api->Call("DELETE", "/api/v1/devices/" + PathPart(name_)));
        Print(ctx, j, [&](const Json&) { return fmt::format("device \"{}\" deleted\n", name_); });
        return Status::Ok();
      });
    });

    CLI::App* token = devices->add_subcommand(
        "token", "Give a device a new token (rotate); prints it, shown only this once");
    token->add_option("NAME", name_, "Device name")->required();
    token->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(
            Json j, ctx.api->Call("POST", "/api/v1/devices/" + PathPart(name_) + "/token"));
        Print(ctx, j, [](const Json& d) { return DeviceTokenText(d, true); });
        return Status::Ok();
      });
    });
  }

  void DefineData() {
    CLI::App* data = app_.add_subcommand("data", "Query telemetry stored in the cloud");
    data->require_subcommand(1);
    CLI::App* query = data->add_subcommand(
        "query", "Readings of one device, ordered by metric then time (raw or aggregated)");
    query->add_option("--device", device_, "Device name")->required();
    query->add_option("--node", node_, "Only readings sent by this node");
    query->add_option("--metric", metric_, "Only this metric");
    query->add_option("--from", from_,
                      "Start (inclusive): RFC 3339, epoch ms, or how long ago (1h)");
    query->add_option("--to", to_, "End (exclusive); default: now + 1h");
    query->add_option("--step", step_, "Bucket width for --agg, e.g. 1m")
        ->check(DurationValidator());
    query->add_option("--agg", agg_, "Aggregate per bucket")
        ->check(CLI::IsMember({"avg", "min", "max", "sum", "count"}));
    query->add_option("--limit", limit_, "Most points to return (server default: 10000)")
        ->check(CLI::Range(1, 100000));
    query->add_option("--after", after_,
                      "Continue after this point: METRIC,TSNS of the last point of a page");
    query->callback([this] {
      if (step_.empty() != agg_.empty()) {
        throw CLI::ValidationError("--step/--agg", "--step and --agg go together");
      }
      Select(true, [this](Context& ctx) -> Status {
        std::string target = "/api/v1/telemetry?device=" + http::UrlEncode(device_);
        for (auto [key, value] : {std::pair{"node", &node_},
                                  {"metric", &metric_},
                                  {"from", &from_},
                                  {"to", &to_},
                                  {"step", &step_},
                                  {"agg", &agg_},
                                  {"after", &after_}}) {
          if (!value->empty()) target += fmt::format("&{}={}", key, http::UrlEncode(*value));
        }
        if (limit_) target += fmt::format("&limit={}", *limit_);
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", target));
        Print(ctx, j, PointsTable, "points");
        size_t limit = limit_ ? static_cast<size_t>(*limit_) : 10000;
        if (ctx.format == OutputFormat::kTable && j.is_array() && j.size() == limit) {
          const Json& last = j.back();
          ctx.err << fmt::format("{} points shown; there may be more: add --after {},{}\n", limit,
                                 last.value("metric", ""), last.value("tsNs", int64_t{0}));
        }
        return Status::Ok();
      });
    });
  }

  void DefineApply() {
    CLI::App* apply = app_.add_subcommand(
        "apply", "Create or replace what YAML or JSON documents declare (kind: Rule, App)");
    apply
        ->add_option("-f,--filename", files_,
                     "File of one or more documents separated by --- (- reads stdin); may be "
                     "given more than once")
        ->required();
    apply->callback(
        [this] { Select(true, [this](Context& ctx) -> Status { return Apply(ctx); }); });
  }

  // Reads every file first, so that a file that does not parse applies nothing; then applies
  // each document, going on after one that fails, as kubectl does.
  Status Apply(Context& ctx) {
    struct Doc {
      std::string where;  // "rules.yaml document 2"
      Json body;
    };
    std::vector<Doc> docs;
    for (const std::string& file : files_) {
      std::string text;
      if (file == "-") {
        text.assign(std::istreambuf_iterator<char>(ctx.in), std::istreambuf_iterator<char>());
      } else {
        VERGE_ASSIGN_OR_RETURN(text, ReadFile(file));
      }
      VERGE_ASSIGN_OR_RETURN(auto parsed, ParseDocuments(text, file == "-" ? "stdin" : file));
      for (size_t i = 0; i < parsed.size(); ++i) {
        docs.push_back({fmt::format("{} document {}", file == "-" ? "stdin" : file, i + 1),
                        std::move(parsed[i])});
      }
    }
    if (docs.empty()) return Error(Code::kInvalidArgument, "no documents to apply");
    Json applied = Json::array();
    std::string lines;
    size_t failed = 0;
    for (const Doc& d : docs) {
      auto result = ApplyOne(ctx, d.where, d.body);
      if (!result.ok()) {
        ++failed;
        ctx.err << "vergectl: " << result.status().message() << "\n";
        continue;
      }
      std::string name;
      if (auto meta = result->find("metadata"); meta != result->end() && meta->is_object())
        name = meta->value("name", "");
      std::string kind = d.body.value("kind", "");
      std::transform(kind.begin(), kind.end(), kind.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      lines += fmt::format("{}/{} {}\n", kind, name, result->value("result", "applied"));
      applied.push_back(std::move(*result));
    }
    Print(ctx, applied, [&](const Json&) { return lines; });
    if (failed > 0) {
      return Error(Code::kInvalidArgument, "{} of {} documents not applied", failed, docs.size());
    }
    return Status::Ok();
  }

  static Result<Json> ApplyOne(Context& ctx, const std::string& where, const Json& doc) {
    auto field = [&](const Json& obj, const char* key) -> std::string {
      auto it = obj.find(key);
      return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
    };
    std::string kind = field(doc, "kind");
    std::string name;
    if (auto meta = doc.find("metadata"); meta != doc.end() && meta->is_object()) {
      name = field(*meta, "name");
    }
    std::string what = name.empty() ? where : fmt::format("{} \"{}\"", where, name);
    if (kind.empty()) {
      return Error(Code::kInvalidArgument, "{}: has no kind (kind: Rule or App)", what);
    }
    if (kind == "Device") {
      return Error(Code::kInvalidArgument,
                   "{}: kind Device cannot be applied yet; declare devices with vergectl devices "
                   "add NAME -f FILE",
                   what);
    }
    if (kind != "Rule" && kind != "App") {
      return Error(Code::kInvalidArgument,
                   "{}: kind \"{}\" is not supported (apply takes kind Rule or App)", what, kind);
    }
    if (name.empty()) return Error(Code::kInvalidArgument, "{}: metadata.name is required", what);
    std::string collection = kind == "App" ? "apps" : "rules";
    auto j = ctx.api->Call("PUT", "/api/v1/" + collection + "/" + PathPart(name), doc);
    // The server names the rule in its errors; say which document it was.
    if (!j.ok()) return j.status().Wrap(where);
    return j;
  }

  void DefineRules() {
    CLI::App* rules = app_.add_subcommand(
        "rules", "List, inspect, stop, start, restart and delete streaming SQL rules");
    rules->alias("rule");
    rules->require_subcommand(1);

    CLI::App* list = rules->add_subcommand("list", "List rules");
    list->alias("ls");
    list->callback([this] {
      Select(true, [](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", "/api/v1/rules"));
        Print(
            ctx, j, [&](const Json& d) { return RulesTable(d, ctx.now_ms); }, "rules");
        return Status::Ok();
      });
    });

    CLI::App* get = rules->add_subcommand("get", "Show one rule (-o yaml: the whole document)");
    get->add_option("NAME", name_, "Rule name")->required();
    get->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", "/api/v1/rules/" + PathPart(name_)));
        Print(ctx, j, [&](const Json& d) { return RulesTable(d, ctx.now_ms); });
        return Status::Ok();
      });
    });

    CLI::App* del = rules->add_subcommand("delete", "Delete a rule from every node");
    del->alias("rm");
    del->add_option("NAME", name_, "Rule name")->required();
    del->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("DELETE", "/api/v1/rules/" + PathPart(name_)));
        Print(ctx, j, [&](const Json&) { return fmt::format("rule \"{}\" deleted\n", name_); });
        return Status::Ok();
      });
    });

    for (auto [verb, done, help] :
         {std::tuple{"stop", "stopped", "Stop a rule on every node (the nodes keep it)"},
          {"start", "started", "Start a stopped rule again"},
          {"restart", "restarted",
           "Restart a rule from empty state on every node (and start it if stopped)"}}) {
      CLI::App* cmd = rules->add_subcommand(verb, help);
      cmd->add_option("NAME", name_, "Rule name")->required();
      cmd->callback([this, verb = std::string(verb), done = std::string(done)] {
        Select(true, [this, verb, done](Context& ctx) -> Status {
          VERGE_ASSIGN_OR_RETURN(
              Json j, ctx.api->Call("POST", "/api/v1/rules/" + PathPart(name_) + "/" + verb));
          Print(ctx, j, [&](const Json&) { return fmt::format("rule \"{}\" {}\n", name_, done); });
          return Status::Ok();
        });
      });
    }

    CLI::App* status = rules->add_subcommand(
        "status", "How a rule runs on each node it is on (pending: not reported yet)");
    status->add_option("NAME", name_, "Rule name")->required();
    status->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(
            Json j, ctx.api->Call("GET", "/api/v1/rules/" + PathPart(name_) + "/status"));
        Print(ctx, j, RuleStatusTable, "nodes for this rule");
        return Status::Ok();
      });
    });
  }

  void DefineApps() {
    CLI::App* apps = app_.add_subcommand(
        "apps", "List, inspect, explain, roll back and delete apps (apply them with apply -f)");
    apps->alias("app");
    apps->require_subcommand(1);

    CLI::App* list = apps->add_subcommand("list", "List apps and their replicas");
    list->alias("ls");
    list->callback([this] {
      Select(true, [](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", "/api/v1/apps"));
        Print(ctx, j, AppsTable, "apps");
        return Status::Ok();
      });
    });

    CLI::App* get =
        apps->add_subcommand("get", "Show one app: its replicas, where they run, and the rollout");
    get->add_option("NAME", name_, "App name")->required();
    get->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", "/api/v1/apps/" + PathPart(name_)));
        Print(ctx, j, AppDetail);
        return Status::Ok();
      });
    });

    CLI::App* del = apps->add_subcommand("delete", "Delete an app: its replicas stop everywhere");
    del->alias("rm");
    del->add_option("NAME", name_, "App name")->required();
    del->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("DELETE", "/api/v1/apps/" + PathPart(name_)));
        Print(ctx, j, [&](const Json&) { return fmt::format("app \"{}\" deleted\n", name_); });
        return Status::Ok();
      });
    });

    CLI::App* explain = apps->add_subcommand(
        "explain", "Why each node can or cannot take a replica, and how the others score");
    explain->add_option("NAME", name_, "App name")->required();
    explain->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(
            Json j, ctx.api->Call("GET", "/api/v1/apps/" + PathPart(name_) + "/explain"));
        Print(ctx, j, ExplainTable);
        return Status::Ok();
      });
    });

    CLI::App* rollout = apps->add_subcommand("rollout", "The rollout of an app's revisions");
    rollout->require_subcommand(1);
    CLI::App* status = rollout->add_subcommand("status", "How far the newest revision got");
    status->add_option("NAME", name_, "App name")->required();
    status->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(
            Json j, ctx.api->Call("GET", "/api/v1/apps/" + PathPart(name_) + "/rollout/status"));
        Print(ctx, j, RolloutLines);
        return Status::Ok();
      });
    });
    CLI::App* undo =
        rollout->add_subcommand("undo", "Roll back to the previous revision (or --to-revision N)");
    undo->add_option("NAME", name_, "App name")->required();
    undo->add_option("--to-revision", revision_, "Revision to roll back to");
    undo->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        std::string target = "/api/v1/apps/" + PathPart(name_) + "/rollout/undo";
        if (revision_ > 0) target += fmt::format("?revision={}", revision_);
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("POST", target));
        Print(ctx, j, RolloutLines);
        return Status::Ok();
      });
    });
  }

  void DefineArtifacts() {
    CLI::App* artifacts = app_.add_subcommand(
        "artifacts", "Push, list and delete the files apps run from (content-addressed)");
    artifacts->alias("artifact");
    artifacts->require_subcommand(1);
    CLI::App* push = artifacts->add_subcommand(
        "push",
        "Upload a file (executable, tarball, OCI image archive, Lua script); prints the "
        "sha256:... reference to put in an App");
    push->add_option("FILE", name_, "The file")->required();
    push->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(std::string data, ReadFile(name_));
        std::string base = name_.substr(name_.find_last_of('/') + 1);
        VERGE_ASSIGN_OR_RETURN(Json j,
                               ctx.api->CallRaw("POST", "/api/v1/artifacts?name=" + PathPart(base),
                                                std::move(data), "application/octet-stream"));
        Print(ctx, j,
              [](const Json& a) { return fmt::format("{}\n", a.value("ref", std::string())); });
        return Status::Ok();
      });
    });
    CLI::App* list = artifacts->add_subcommand("list", "List artifacts");
    list->alias("ls");
    list->callback([this] {
      Select(true, [](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", "/api/v1/artifacts"));
        Print(ctx, j, ArtifactsTable, "artifacts");
        return Status::Ok();
      });
    });
    CLI::App* del = artifacts->add_subcommand("delete", "Delete an artifact");
    del->alias("rm");
    del->add_option("SHA256", name_, "sha256:... or the hex digest")->required();
    del->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        VERGE_ASSIGN_OR_RETURN(Json j,
                               ctx.api->Call("DELETE", "/api/v1/artifacts/" + PathPart(name_)));
        Print(ctx, j, [&](const Json&) { return fmt::format("artifact {} deleted\n", name_); });
        return Status::Ok();
      });
    });
  }

  void DefineLogs() {
    CLI::App* logs = app_.add_subcommand(
        "logs", "Show an app's output (stdout and stderr) from the nodes it runs on");
    logs->add_option("APP", name_, "App name")->required();
    logs->add_option("--node", node_, "Only the replicas on this node");
    logs->add_option("--tail", tail_, "The last N lines of each replica (default: all kept)");
    logs->add_flag("-f,--follow", follow_, "Keep printing new output until interrupted");
    logs->callback([this] { Select(true, [this](Context& ctx) { return Logs(ctx); }); });
  }

  // Prints each replica's output, every line prefixed with where it ran. Following polls
  // every second for what each replica wrote after the position the last answer ended at.
  Status Logs(Context& ctx) {
    std::map<std::string, uint64_t> offsets;  // "NODE/REPLICA" -> position
    for (bool first = true;; first = false) {
      std::string target = "/api/v1/apps/" + PathPart(name_) + "/logs";
      std::vector<std::string> q;
      if (!node_.empty()) q.push_back("node=" + PathPart(node_));
      if (first && tail_ > 0) q.push_back(fmt::format("tail={}", tail_));
      if (!offsets.empty()) {
        std::string since;
        for (const auto& [k, off] : offsets)
          since += fmt::format("{}{}:{}", since.empty() ? "" : ",", k, off);
        q.push_back("since=" + PathPart(since));
      }
      for (size_t i = 0; i < q.size(); ++i) target += (i == 0 ? "?" : "&") + q[i];
      VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", target));
      if (ctx.format != OutputFormat::kTable && !follow_) {
        Print(ctx, j, [](const Json&) { return std::string(); });
        return Status::Ok();
      }
      for (const auto& e : j.value("errors", Json::array())) {
        ctx.err << "vergectl: " << e.value("node", "") << ": " << e.value("error", "") << "\n";
      }
      for (const auto& r : j.value("logs", Json::array())) {
        std::string node = r.value("node", ""), replica = r.value("replica", "");
        offsets[node + "/" + replica] = r.value("offset", uint64_t{0});
        std::string text = r.value("output", "");
        std::string prefix = fmt::format("[{} {}] ", node, replica);
        for (size_t pos = 0; pos < text.size();) {
          size_t nl = text.find('\n', pos);
          size_t end = nl == std::string::npos ? text.size() : nl + 1;
          ctx.out << prefix << std::string_view(text).substr(pos, end - pos);
          if (nl == std::string::npos) ctx.out << "\n";
          pos = end;
        }
      }
      ctx.out.flush();
      if (!follow_) return Status::Ok();
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }

  void DefineAlerts() {
    CLI::App* alerts = app_.add_subcommand("alerts", "Show alerts raised by rules");
    alerts->alias("alert");
    alerts->require_subcommand(1);
    CLI::App* list = alerts->add_subcommand("list", "List alerts, newest first");
    list->alias("ls");
    list->add_option("--rule", rule_, "Only alerts of this rule");
    list->add_option("--node", node_, "Only alerts from this node");
    list->add_option("--severity", severity_, "Only alerts of this severity")
        ->check(CLI::IsMember({"info", "warning", "critical"}));
    list->add_option("--since", since_,
                     "Only alerts since then: how long ago (1h), RFC 3339, or epoch ms");
    list->add_option("--limit", limit_, "Most alerts to show (server default: 100)")
        ->check(CLI::Range(1, 10000));
    list->callback([this] {
      Select(true, [this](Context& ctx) -> Status {
        std::string query;
        for (auto [key, value] : {std::pair{"rule", &rule_},
                                  {"node", &node_},
                                  {"severity", &severity_},
                                  {"since", &since_}}) {
          if (!value->empty()) {
            query +=
                fmt::format("{}{}={}", query.empty() ? "?" : "&", key, http::UrlEncode(*value));
          }
        }
        if (limit_) query += fmt::format("{}limit={}", query.empty() ? "?" : "&", *limit_);
        VERGE_ASSIGN_OR_RETURN(Json j, ctx.api->Call("GET", "/api/v1/alerts" + query));
        Print(ctx, j, AlertsTable, "alerts");
        return Status::Ok();
      });
    });
  }

  void Select(bool needs_api, std::function<Status(Context&)> run) {
    command_ = Command{needs_api, std::move(run)};
  }

  CLI::App app_;
  ConfigFlags flags_;
  std::string output_ = "table";
  std::string status_filter_;
  std::string name_;
  uint32_t tail_ = 0;
  bool follow_ = false;
  uint64_t revision_ = 0;
  std::vector<std::string> label_args_;
  std::optional<int> limit_;
  std::string ttl_ = "24h";
  std::string description_;
  std::string token_id_;
  std::string node_;
  std::string labels_csv_;
  std::string file_;
  std::string device_;
  std::string metric_;
  std::string from_;
  std::string to_;
  std::string step_;
  std::string agg_;
  std::string after_;
  std::vector<std::string> files_;
  std::string rule_;
  std::string severity_;
  std::string since_;
  Command command_;
};

}  // namespace

Result<Json> ParseLabelArgs(const std::vector<std::string>& args) {
  Json labels = Json::object();
  for (const std::string& arg : args) {
    std::string key;
    Json value;
    if (auto eq = arg.find('='); eq != std::string::npos) {
      key = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (arg.size() > 1 && arg.back() == '-') {
      key = arg.substr(0, arg.size() - 1);
    } else {
      return Error(Code::kInvalidArgument,
                   "label argument \"{}\": use KEY=VALUE to set a label or KEY- to remove it", arg);
    }
    if (key.empty()) {
      return Error(Code::kInvalidArgument, "label argument \"{}\" has no key", arg);
    }
    if (labels.contains(key)) {
      return Error(Code::kInvalidArgument, "label \"{}\" is given more than once", key);
    }
    labels[key] = std::move(value);
  }
  if (labels.empty()) return Error(Code::kInvalidArgument, "no labels given");
  return labels;
}

Result<Json> ParseLabelList(std::string_view csv) {
  Json labels = Json::object();
  size_t start = 0;
  while (start <= csv.size()) {
    size_t comma = csv.find(',', start);
    std::string_view item =
        csv.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return Error(Code::kInvalidArgument, "label {:?}: use KEY=VALUE, separated by commas", item);
    }
    std::string key(item.substr(0, eq));
    if (labels.contains(key)) {
      return Error(Code::kInvalidArgument, "label \"{}\" is given more than once", key);
    }
    labels[key] = std::string(item.substr(eq + 1));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return labels;
}

namespace {

// A plain YAML scalar as JSON: null, bool, integer or float where YAML 1.2 reads one.
Json YamlScalar(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted: a string whatever it looks like
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  int64_t i = 0;
  auto [pi, ei] = std::from_chars(s.data(), s.data() + s.size(), i);
  if (ei == std::errc() && pi == s.data() + s.size()) return i;
  double d = 0;
  auto [pd, ed] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ed == std::errc() && pd == s.data() + s.size() && std::isfinite(d)) return d;
  return s;
}

Json YamlToJson(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      Json j = Json::object();
      for (const auto& kv : n) j[kv.first.as<std::string>()] = YamlToJson(kv.second);
      return j;
    }
    case YAML::NodeType::Sequence: {
      Json j = Json::array();
      for (const auto& v : n) j.push_back(YamlToJson(v));
      return j;
    }
    case YAML::NodeType::Scalar:
      return YamlScalar(n);
    default:
      return nullptr;
  }
}

// JSON (text that starts with { or [) or YAML, every YAML document of it, as JSON values.
Result<std::vector<Json>> LoadDocuments(std::string_view text, std::string_view name) {
  size_t first = text.find_first_not_of(" \t\r\n");
  std::vector<Json> docs;
  if (first != std::string_view::npos && (text[first] == '{' || text[first] == '[')) {
    Json doc = Json::parse(text, nullptr, false);
    if (doc.is_discarded()) return Error(Code::kInvalidArgument, "{}: not valid JSON", name);
    docs.push_back(std::move(doc));
    return docs;
  }
  try {
    for (const YAML::Node& n : YAML::LoadAll(std::string(text))) docs.push_back(YamlToJson(n));
  } catch (const YAML::Exception& e) {
    return Error(Code::kInvalidArgument, "{}: line {}, column {}: {}", name, e.mark.line + 1,
                 e.mark.column + 1, e.msg);
  }
  return docs;
}

}  // namespace

Result<Json> ParseDocument(std::string_view text, std::string_view name) {
  VERGE_ASSIGN_OR_RETURN(auto docs, LoadDocuments(text, name));
  if (docs.size() != 1 || !docs[0].is_object()) {
    return Error(Code::kInvalidArgument, "{}: must be a mapping of device fields", name);
  }
  return std::move(docs[0]);
}

Result<std::vector<Json>> ParseDocuments(std::string_view text, std::string_view name) {
  VERGE_ASSIGN_OR_RETURN(auto loaded, LoadDocuments(text, name));
  std::vector<Json> docs;
  size_t n = 0;
  for (auto& doc : loaded) {
    ++n;
    if (doc.is_null()) continue;  // an empty document: "---" at the end, only comments
    std::vector<Json> items;
    if (doc.is_array()) {
      for (auto& item : doc) items.push_back(std::move(item));
    } else {
      items.push_back(std::move(doc));
    }
    for (auto& item : items) {
      if (!item.is_object()) {
        return Error(Code::kInvalidArgument,
                     "{}: document {} must be a mapping (apiVersion, kind, metadata, spec)", name,
                     n);
      }
      docs.push_back(std::move(item));
    }
  }
  return docs;
}

Result<Json> DeviceBody(const std::string& name, const std::string& node, const Json& labels,
                        const std::optional<Json>& document) {
  Json body = document ? *document : Json::object();
  if (auto it = body.find("name"); it != body.end() && !it->is_null() && *it != name) {
    return Error(Code::kInvalidArgument, "the file names device {} but the command names \"{}\"",
                 it->dump(), name);
  }
  body["name"] = name;
  if (!node.empty()) body["node"] = node;
  if (!labels.empty()) {
    if (!body.contains("labels") || !body["labels"].is_object()) body["labels"] = Json::object();
    for (const auto& [k, v] : labels.items()) body["labels"][k] = v;
  }
  return body;
}

int Run(int argc, const char* const* argv, const EnvLookup& env, std::ostream& out,
        std::ostream& err) {
  return Run(argc, argv, env, out, err, std::cin);
}

int Run(int argc, const char* const* argv, const EnvLookup& env, std::ostream& out,
        std::ostream& err, std::istream& in) {
  Cli cli;
  return cli.Main(argc, argv, env, out, err, in);
}

}  // namespace verge::ctl
