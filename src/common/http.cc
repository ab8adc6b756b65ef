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
    case Code::kOk:
      return 200;
    case Code::kInvalidArgument:
      return 400;
    case Code::kNotFound:
      return 404;
    case Code::kAlreadyExists:
      return 409;
    case Code::kPermissionDenied:
      return 403;
    case Code::kUnauthenticated:
      return 401;
    case Code::kFailedPrecondition:
      return 412;
    case Code::kUnavailable:
      return 503;
    case Code::kDeadlineExceeded:
      return 504;
    case Code::kResourceExhausted:
      return 413;
    case Code::kDataLoss:
    case Code::kInternal:
      return 500;
  }
  return 500;
}

Response ErrorResponse(const Status& status) {
  nlohmann::json j = {
      {"error", {{"code", CodeName(status.code())}, {"message", status.message()}}}};
  return Response{StatusFor(status.code()), "application/json", j.dump()};
}

Status StatusFromResponse(const Response& resp) {
  Code code = Code::kInternal;
  switch (resp.status) {
    case 400:
      code = Code::kInvalidArgument;
      break;
    case 401:
      code = Code::kUnauthenticated;
      break;
    case 403:
      code = Code::kPermissionDenied;
      break;
    case 404:
      code = Code::kNotFound;
      break;
    case 409:
      code = Code::kAlreadyExists;
      break;
    case 412:
      code = Code::kFailedPrecondition;
      break;
    case 413:
      code = Code::kResourceExhausted;
      break;
    case 503:
      code = Code::kUnavailable;
      break;
    case 504:
      code = Code::kDeadlineExceeded;
      break;
    default:
      break;
  }
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].contains("message") && j["error"]["message"].is_string()) {
    return Status(code, j["error"]["message"].get<std::string>());
  }
  return Status(code, fmt::format("HTTP {}: {}", resp.status, resp.body.substr(0, 200)));
}

Result<std::pair<std::string, std::string>> SplitHostPort(std::string_view server) {
  std::string_view s = server;
  if (s.starts_with("https://")) s.remove_prefix(8);
  if (s.starts_with("http://")) {
    return Error(Code::kInvalidArgument, "server {} must use https://", server);
  }
  if (auto slash = s.find('/'); slash != std::string_view::npos) s = s.substr(0, slash);
  std::string host, port;
  if (s.starts_with('[')) {
    auto close = s.find(']');
    if (close == std::string_view::npos)
      return Error(Code::kInvalidArgument, "bad address {}", server);
    host = std::string(s.substr(1, close - 1));
    if (close + 1 < s.size() && s[close + 1] == ':') port = std::string(s.substr(close + 2));
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) {
      host = std::string(s);
    } else {
      host = std::string(s.substr(0, colon));
      port = std::string(s.substr(colon + 1));
    }
  }
  if (host.empty() || port.empty()) {
    return Error(Code::kInvalidArgument, "address \"{}\" must be HOST:PORT", server);
  }
  for (char c : port) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      return Error(Code::kInvalidArgument, "address \"{}\" has a bad port", server);
    }
  }
  return std::make_pair(host, port);
}

}  // namespace verge::http
