// Conversions between Beast's HTTP messages and Verge's transport-free http::Request and
// http::Response, shared by every Beast server (the cloud's HTTPS front, the node's local API).
// Include only from the few translation units that use Beast.
#pragma once

#include <boost/beast/http.hpp>
#include <cctype>
#include <string>

#include "common/http.h"

namespace verge::http {

inline Request FromBeast(const boost::beast::http::request<boost::beast::http::string_body>& r,
                         const std::string& remote_ip) {
  Request req;
  req.method = std::string(r.method_string());
  req.target = std::string(r.target());
  for (const auto& f : r) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    req.headers[name] = std::string(f.value());
  }
  req.body = r.body();
  req.remote_address = remote_ip;
  ParseTarget(req);
  return req;
}

inline boost::beast::http::response<boost::beast::http::string_body> ToBeast(const Response& r,
                                                                             unsigned version,
                                                                             bool keep_alive,
                                                                             const char* server) {
  namespace bhttp = boost::beast::http;
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), version};
  res.set(bhttp::field::server, server);
  res.set(bhttp::field::content_type, r.content_type);
  res.set(bhttp::field::cache_control, "no-store");
  res.keep_alive(keep_alive);
  res.body() = r.body;
  res.prepare_payload();
  return res;
}

}  // namespace verge::http
