#include "node/rules/json_value.h"

#include <cmath>
#include <string>
#include <utility>

namespace verge::rules {

Value FromJson(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
      return Value::Null();
    case nlohmann::json::value_t::boolean:
      return Value::Bool(j.get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::Int(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      auto u = j.get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Value::Int(static_cast<int64_t>(u));
      return Value::Float(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value::Float(j.get<double>());
    case nlohmann::json::value_t::string:
      return Value::String(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      Array a;
      a.reserve(j.size());
      for (const auto& e : j) a.push_back(FromJson(e));
      return Value::MakeArray(std::move(a));
    }
    case nlohmann::json::value_t::object: {
      Object o;
      for (const auto& [k, e] : j.items()) o.emplace(k, FromJson(e));
      return Value::MakeObject(std::move(o));
    }
    case nlohmann::json::value_t::binary:
      return Value::Null();
  }
  return Value::Null();
}

nlohmann::json ToNlohmann(const Value& v) {
  switch (v.type()) {
    case ValueType::kNull:
      return nullptr;
    case ValueType::kBool:
      return v.bool_value();
    case ValueType::kInt:
      return v.int_value();
    case ValueType::kFloat:
      if (!std::isfinite(v.float_value())) return nullptr;
      return v.float_value();
    case ValueType::kString:
      return v.string_value();
    case ValueType::kArray: {
      nlohmann::json a = nlohmann::json::array();
      for (const Value& e : v.array_value()) a.push_back(ToNlohmann(e));
      return a;
    }
    case ValueType::kObject: {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& [k, e] : v.object_value()) o[k] = ToNlohmann(e);
      return o;
    }
  }
  return nullptr;
}

Result<Value> ParseJsonValue(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status(Code::kInvalidArgument, "invalid JSON");
  return FromJson(j);
}

}  // namespace verge::rules
