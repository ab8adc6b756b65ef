// Plain HTTP request/response values that cross between the Beast I/O code and the handlers,
// so handlers compile and test without Beast. Thread-safety: plain values.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/status.h"

namespace verge::http {

// Set by the cloud's server on requests that came with a verified client certificate:
// "<common name> <serial hex>". Any such header a client sends itself is removed first.
inline constexpr std::string_view kPeerHeader = "x-verge-peer";

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query as received
  std::string path;    // decoded path without the query
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  std::string remote_address;

  std::string Header(std::string_view lower_name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// Splits target into path and decoded query parameters.
void ParseTarget(Request& req);
std::string UrlDecode(std::string_view s);
std::string UrlEncode(std::string_view s);

// The HTTP status that stands for a Status code.
int StatusFor(Code code);
// {"error": {"code": "...", "message": "..."}} with the matching HTTP status.
Response ErrorResponse(const Status& status);
// Splits "https://host:port/..." or "host:port" or "[::1]:port" into host and port.
Result<std::pair<std::string, std::string>> SplitHostPort(std::string_view server);

// Reads an error body written by ErrorResponse back into a Status; falls back to the text.
Status StatusFromResponse(const Response& resp);

}  // namespace verge::http
