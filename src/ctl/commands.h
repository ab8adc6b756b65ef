// The vergectl command tree (nodes, token, devices, data, apply, rules, alerts, status, version)
// and the code that runs each command against verge-cloud's REST API. Run() is the whole
// program, with the environment and streams passed in, so tests drive the real command line
// without a process. Thread-safety: Run() is reentrant; each call builds its own parser and
// client.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "ctl/client_config.h"
#include "ctl/output.h"

namespace verge::ctl {

// Turns `nodes label` arguments into the PATCH body's "labels" object, as kubectl reads them:
// "k=v" sets k to v, "k=" sets k to the empty value, "k-" removes k (value null). Naming one
// key twice is an error, because which of the two was meant is a guess.
Result<Json> ParseLabelArgs(const std::vector<std::string>& args);

// Reads `devices add --labels` "k=v,k2=v2" into an object. Empty values are allowed ("k="),
// a key given twice is an error.
Result<Json> ParseLabelList(std::string_view csv);

// Reads a document given with -f: JSON, or YAML with the same fields (YAML scalars become
// JSON numbers, booleans and nulls as YAML reads them; quoted ones stay strings). `name` is
// the file's name, for messages. The top level must be a mapping.
Result<Json> ParseDocument(std::string_view text, std::string_view name);

// Reads the documents of `apply -f`: YAML, one or more documents separated by "---" (empty
// ones are skipped), or JSON; a document that is a list stands for its items. Each must be a
// mapping. `name` is the file's name ("-" for stdin), for messages, which say where a YAML
// error is (line and column) and which document is wrong.
Result<std::vector<Json>> ParseDocuments(std::string_view text, std::string_view name);

// The POST /api/v1/devices body: the -f document (or {}), with NAME, --node and --labels
// applied over it. A NAME that differs from the document's "name" is an error.
Result<Json> DeviceBody(const std::string& name, const std::string& node, const Json& labels,
                        const std::optional<Json>& document);

// Parses argv, runs the command and returns the exit code: 0 done, 1 the command failed
// (message on `err` as "vergectl: ..."), 2 the command line is wrong.
int Run(int argc, const char* const* argv, const EnvLookup& env, std::ostream& out,
        std::ostream& err);
// The same, reading `-f -` from `in` (the one above reads std::cin).
int Run(int argc, const char* const* argv, const EnvLookup& env, std::ostream& out,
        std::ostream& err, std::istream& in);

}  // namespace verge::ctl
