// Typed configuration from YAML: each module declares its fields once (name, description,
// member, validation), and gets parsing that rejects unknown keys and reports every error at
// once, plus a commented default file for --print-default-config. Parsing has no side effects.
// Thread-safety: a schema is immutable after construction.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/duration.h"
#include "common/status.h"

namespace verge {

template <typename T>
class ConfigSchema {
 public:
  using Setter = std::function<std::optional<std::string>(const YAML::Node&, T&)>;
  using Printer = std::function<std::string(const T&)>;

  ConfigSchema& Str(std::string name, std::string desc, std::string T::*m) {
    return Add(
        std::move(name), std::move(desc),
        [m](const YAML::Node& n, T& t) -> std::optional<std::string> {
          if (!n.IsScalar()) return "must be a string";
          t.*m = n.Scalar();
          return std::nullopt;
        },
        [m](const T& t) { return Quote(t.*m); });
  }
  ConfigSchema& Dur(std::string name, std::string desc, Millis T::*m) {
    return Add(
        std::move(name), std::move(desc),
        [m](const YAML::Node& n, T& t) -> std::optional<std::string> {
          if (!n.IsScalar()) return "must be a duration like 30s";
          auto d = ParseDuration(n.Scalar());
          if (!d.ok()) return d.status().message();
          t.*m = *d;
          return std::nullopt;
        },
        [m](const T& t) { return FormatDuration(t.*m); });
  }
  ConfigSchema& Int(std::string name, std::string desc, int T::*m, int min, int max) {
    return Add(
        std::move(name), std::move(desc),
        [m, min, max](const YAML::Node& n, T& t) -> std::optional<std::string> {
          if (!n.IsScalar()) return "must be an integer";
          try {
            size_t pos = 0;
            long v = std::stol(n.Scalar(), &pos);
            if (pos != n.Scalar().size()) return "must be an integer";
            if (v < min || v > max) return fmt::format("must be between {} and {}", min, max);
            t.*m = static_cast<int>(v);
          } catch (...) {
            return "must be an integer";
          }
          return std::nullopt;
        },
        [m](const T& t) { return std::to_string(t.*m); });
  }
  ConfigSchema& StrList(std::string name, std::string desc, std::vector<std::string> T::*m) {
    return Add(
        std::move(name), std::move(desc),
        [m](const YAML::Node& n, T& t) -> std::optional<std::string> {
          if (!n.IsSequence()) return "must be a list of strings";
          std::vector<std::string> v;
          for (const auto& e : n) {
            if (!e.IsScalar()) return "must be a list of strings";
            v.push_back(e.Scalar());
          }
          t.*m = std::move(v);
          return std::nullopt;
        },
        [m](const T& t) {
          std::string s = "[";
          for (size_t i = 0; i < (t.*m).size(); ++i) s += (i ? ", " : "") + Quote((t.*m)[i]);
          return s + "]";
        });
  }
  ConfigSchema& StrMap(std::string name, std::string desc,
                       std::map<std::string, std::string> T::*m) {
    return Add(
        std::move(name), std::move(desc),
        [m](const YAML::Node& n, T& t) -> std::optional<std::string> {
          if (!n.IsMap()) return "must be a map of strings";
          std::map<std::string, std::string> v;
          for (const auto& kv : n) {
            if (!kv.first.IsScalar() || !kv.second.IsScalar()) return "must be a map of strings";
            v[kv.first.Scalar()] = kv.second.Scalar();
          }
          t.*m = std::move(v);
          return std::nullopt;
        },
        [m](const T& t) {
          std::string s = "{";
          bool first = true;
          for (const auto& [k, v] : t.*m) {
            s += (first ? "" : ", ") + Quote(k) + ": " + Quote(v);
            first = false;
          }
          return s + "}";
        });
  }

  // Applies the YAML document onto `out` (fields absent from the document keep their values).
  Status Parse(std::string_view yaml, T& out, std::string_view source) const {
    YAML::Node root;
    try {
      root = YAML::Load(std::string(yaml));
    } catch (const YAML::Exception& e) {
      return Error(Code::kInvalidArgument, "{}: line {}, column {}: {}", source, e.mark.line + 1,
                   e.mark.column + 1, e.msg);
    } catch (const std::exception& e) {
      return Error(Code::kInvalidArgument, "{}: {}", source, e.what());
    }
    if (root.IsNull()) return Status::Ok();
    if (!root.IsMap())
      return Error(Code::kInvalidArgument, "{}: must be a YAML map of settings", source);
    std::vector<std::string> errors;
    T candidate = out;
    try {
      for (const auto& kv : root) {
        if (!kv.first.IsScalar()) {
          errors.push_back("keys must be strings");
          continue;
        }
        const std::string& key = kv.first.Scalar();
        auto it = index_.find(key);
        if (it == index_.end()) {
          errors.push_back(fmt::format("unknown setting \"{}\"", key));
          continue;
        }
        if (auto err = fields_[it->second].set(kv.second, candidate)) {
          errors.push_back(fmt::format("{}: {}", key, *err));
        }
      }
    } catch (const std::exception& e) {
      errors.push_back(e.what());
    }
    if (!errors.empty())
      return Error(Code::kInvalidArgument, "{}: {}", source, fmt::join(errors, "; "));
    out = std::move(candidate);
    return Status::Ok();
  }

  std::string Print(const T& cfg) const {
    std::string out;
    for (const auto& f : fields_)
      out += fmt::format("# {}\n{}: {}\n", f.desc, f.name, f.print(cfg));
    return out;
  }

 private:
  struct Field {
    std::string name;
    std::string desc;
    Setter set;
    Printer print;
  };
  ConfigSchema& Add(std::string name, std::string desc, Setter s, Printer p) {
    index_[name] = fields_.size();
    fields_.push_back(Field{std::move(name), std::move(desc), std::move(s), std::move(p)});
    return *this;
  }
  static std::string Quote(const std::string& s) {
    YAML::Emitter e;
    e << YAML::DoubleQuoted << s;
    return e.c_str();
  }
  std::vector<Field> fields_;
  std::map<std::string, size_t> index_;
};

// Joins validation errors into one Status, or Ok when there are none.
inline Status ValidationResult(std::string_view what, const std::vector<std::string>& errors) {
  if (errors.empty()) return Status::Ok();
  return Error(Code::kInvalidArgument, "{}: {}", what, fmt::join(errors, "; "));
}

}  // namespace verge
