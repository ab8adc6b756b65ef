#include "common/http.h"

#include <nlohmann/json.hpp>

namespace verge::http {

std::string Request::Header(std::string_view lower_name) const {
  auto it = headers.find(std::string(lower_name));
  return it == headers.end() ? "" : it->second;
}

std::string UrlDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

void ParseTarget(Request& req) {
  std::string_view t = req.target;
  size_t q = t.find('?');
  req.path = UrlDecode(t.substr(0, q));
  req.query.clear();
  if (q == std::string_view::npos) return;
  std::string_view rest = t.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    size_t eq = kv.find('=');
    std::string key = UrlDecode(kv.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "" : UrlDecode(kv.substr(eq + 1));
    if (!key.empty()) req.query[key] = value;
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
}

int StatusFor(Code code) {
  switch (code) {
    case Code::kOk: return 200;
    case Code::kInvalidArgument: return 400;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists: return 409;
    case Code::kPermissionDenied: return 403;
    case Code::kUnauthenticated: return 401;
    case Code::kFailedPrecondition: return 412;
    case Code::kUnavailable: return 503;
    case Code::kDeadlineExceeded: return 504;
    case Code::kResourceExhausted: return 413;
    case Code::kDataLoss:
    case Code::kInternal: return 500;
  }
  return 500;
}

Response ErrorResponse(const Status& status) {
  nlohmann::json j = {{"error", {{"code", CodeName(status.code())}, {"message", status.message()}}}};
  return Response{StatusFor(status.code()), "application/json", j.dump()};
}

Status StatusFromResponse(const Response& resp) {
  Code code = Code::kInternal;
  switch (resp.status) {
    case 400: code = Code::kInvalidArgument; break;
    case 401: code = Code::kUnauthenticated; break;
    case 403: code = Code::kPermissionDenied; break;
    case 404: code = Code::kNotFound; break;
    case 409: code = Code::kAlreadyExists; break;
    case 412: code = Code::kFailedPrecondition; break;
    case 413: code = Code::kResourceExhausted; break;
    case 503: code = Code::kUnavailable; break;
    case 504: code = Code::kDeadlineExceeded; break;
    default: break;
  }
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].contains("message") && j["error"]["message"].is_string()) {
    return Status(code, j["error"]["message"].get<std::string>());
  }
  return Status(code, fmt::format("HTTP {}: {}", resp.status, resp.body.substr(0, 200)));
}

}  // namespace verge::http
