// verge-devsim http: Beast lives in this translation unit only (slow to compile).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <iostream>

#include "common/http.h"
#include "devsim/modes.h"

namespace verge::devsim {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

// One keep-alive HTTP/1.1 connection over plain TCP, blocking. Operations run
// asynchronously on a private io_context only so that beast::tcp_stream's expiry bounds
// them. Thread-safety: one thread.
class HttpConnection {
 public:
  struct Reply {
    int status = 0;
    std::string body;
  };

  HttpConnection(HttpTarget target, Millis timeout)
      : target_(std::move(target)), timeout_(timeout) {}

  Result<Reply> Post(const std::string& token, std::string_view content_type,
                     const std::string& body) {
    bool reused = connected_;
    auto reply = Exchange(token, content_type, body);
    // A server may close an idle keep-alive connection just as we reuse it: the request
    // never reached it, so one retry on a fresh connection is safe.
    if (!reply.ok() && reused && retryable_) reply = Exchange(token, content_type, body);
    return reply;
  }

 private:
  void Run() {
    ioc_.restart();
    ioc_.run();
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    buffer_.clear();
    connected_ = false;
  }

  Status Connect() {
    tcp::resolver resolver(ioc_);
    beast::error_code ec;
    auto endpoints = resolver.resolve(target_.host, target_.port, ec);
    if (ec) {
      return Error(Code::kUnavailable, "resolve {}: {}", target_.host, ec.message());
    }
    stream_.expires_after(timeout_);
    stream_.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    Run();
    if (ec) {
      Close();
      return Error(Code::kUnavailable, "connect to {}:{}: {}", target_.host, target_.port,
                   ec.message());
    }
    stream_.socket().set_option(tcp::no_delay(true), ec);
    connected_ = true;
    return Status::Ok();
  }

  Result<Reply> Exchange(const std::string& token, std::string_view content_type,
                         const std::string& body) {
    retryable_ = false;
    if (!connected_) VERGE_RETURN_IF_ERROR(Connect());
    bhttp::request<bhttp::string_body> req{bhttp::verb::post, target_.path, 11};
    req.set(bhttp::field::host, target_.host + ":" + target_.port);
    req.set(bhttp::field::user_agent, "verge-devsim");
    req.set(bhttp::field::authorization, "Bearer " + token);
    req.set(bhttp::field::content_type, content_type);
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();

    beast::error_code ec;
    stream_.expires_after(timeout_);
    bhttp::async_write(stream_, req, [&](beast::error_code e, size_t) { ec = e; });
    Run();
    if (ec) {
      retryable_ = true;
      Close();
      return Error(Code::kUnavailable, "send: {}", ec.message());
    }
    bhttp::response<bhttp::string_body> res;
    stream_.expires_after(timeout_);
    bhttp::async_read(stream_, buffer_, res, [&](beast::error_code e, size_t) { ec = e; });
    Run();
    if (ec) {
      retryable_ = ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
                   ec == asio::error::connection_reset;
      Close();
      return Error(Code::kUnavailable, "receive: {}", ec.message());
    }
    if (!res.keep_alive()) Close();
    return Reply{static_cast<int>(res.result_int()), std::move(res.body())};
  }

  const HttpTarget target_;
  const Millis timeout_;
  asio::io_context ioc_;
  beast::tcp_stream stream_{ioc_};
  beast::flat_buffer buffer_;
  bool connected_ = false;
  bool retryable_ = false;  // the last failure happened before the server could act
};

// Logs the first few problems of a run at warn, the rest at debug: a dead server would
// otherwise flood stderr.
void LogProblem(std::atomic<int>& logged, const std::string& msg) {
  if (logged.fetch_add(1) < 5) {
    spdlog::warn("{}", msg);
  } else {
    spdlog::debug("{}", msg);
  }
}

}  // namespace

Result<HttpTarget> ParseHttpUrl(std::string_view url) {
  std::string_view s = url;
  if (s.starts_with("https://")) {
    return Error(Code::kInvalidArgument,
                 "url {}: https is not supported (the node's local listener is plain HTTP)", url);
  }
  if (!s.starts_with("http://")) {
    return Error(Code::kInvalidArgument, "url {} must start with http://", url);
  }
  s.remove_prefix(7);
  auto slash = s.find('/');
  std::string_view authority = s.substr(0, slash);
  std::string path = slash == std::string_view::npos ? "/" : std::string(s.substr(slash));
  std::string hostport(authority);
  bool has_port = authority.starts_with('[') ? authority.find("]:") != std::string_view::npos
                                             : authority.find(':') != std::string_view::npos;
  if (!has_port) hostport += ":80";
  auto hp = http::SplitHostPort(hostport);
  if (!hp.ok()) return Error(Code::kInvalidArgument, "url {}: {}", url, hp.status().message());
  return HttpTarget{hp->first, hp->second, path};
}

int RunHttp(const HttpOptions& o) {
  Counters c;
  StopFlag stop;
  SignalWatcher watcher(stop);
  const auto start = std::chrono::steady_clock::now();
  std::vector<Paced> schedule = MakeSchedule(o.load, start);
  const size_t conns = std::clamp<size_t>(o.connections, 1, schedule.size());
  std::atomic<int> logged{0};
  spdlog::info("sending to http://{}:{}{} for {} device(s) over {} connection(s)", o.target.host,
               o.target.port, o.target.path, schedule.size(), conns);
  {
    Deadline deadline(stop, o.load.duration);
    std::vector<std::thread> threads;
    for (size_t w = 0; w < conns; ++w) {
      std::vector<Paced*> mine;
      for (size_t i = w; i < schedule.size(); i += conns) mine.push_back(&schedule[i]);
      threads.emplace_back([&, mine] {
        HttpConnection conn(o.target, o.timeout);
        RunPaced(mine, o.load, stop, [&](Paced& d, const std::vector<data::Reading>& readings) {
          const uint64_t n = readings.size();
          ++c.requests;
          c.sent += n;
          std::string body = FormatPayload(readings, o.load.format);
          c.bytes += body.size();
          auto reply = conn.Post(d.cred.token, ContentType(o.load.format), body);
          if (!reply.ok()) {
            c.errors += n;
            LogProblem(logged, fmt::format("{}: {}", d.cred.name, reply.status().message()));
          } else if (reply->status >= 200 && reply->status < 300) {
            c.accepted += n;
          } else {
            c.rejected += n;
            LogProblem(logged, fmt::format("{}: HTTP {}: {}", d.cred.name, reply->status,
                                           reply->body.substr(0, 200)));
          }
        });
      });
    }
    for (auto& t : threads) t.join();
  }
  auto elapsed = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - start);
  std::cout << SummaryJson("http", schedule.size(), c, elapsed, o.load.start_ns.has_value())
            << std::endl;
  return LoadExitCode(c);
}

}  // namespace verge::devsim
