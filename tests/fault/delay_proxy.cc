// verge-delay-proxy: a TCP proxy that adds a fixed delay to every chunk it forwards, in both
// directions, keeping each direction's order: the fault tests' stand-in for netem, which this
// kernel lacks. Each chunk read at time t is written at t + delay, so a stream is delayed, not
// throttled. A half-close is passed on after the data before it. Prints "listening HOST:PORT"
// once it accepts connections.
//
//   verge-delay-proxy --listen 10.99.0.1:0 --to 10.99.0.1:7444 --delay 500ms
//
// One thread; each connection is two pumps (reader and delayed writer) per direction.
#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Options {
  tcp::endpoint listen;
  tcp::endpoint to;
  std::chrono::milliseconds delay{0};
};

// One direction of one connection: chunks read from `from`, due at their read time + delay.
struct Pipe {
  struct Chunk {
    Clock::time_point due;
    std::vector<char> data;
  };
  explicit Pipe(asio::any_io_executor ex) : wake(ex) {}
  std::deque<Chunk> queue;
  bool eof = false;
  asio::steady_timer wake;
};

struct Session : std::enable_shared_from_this<Session> {
  Session(tcp::socket client, tcp::socket upstream)
      : a(std::move(client)), b(std::move(upstream)), ab(a.get_executor()), ba(a.get_executor()) {}
  tcp::socket a;  // the client
  tcp::socket b;  // the upstream
  Pipe ab;        // a -> b
  Pipe ba;        // b -> a

  void Close() {
    boost::system::error_code ec;
    a.close(ec);
    b.close(ec);
    ab.wake.cancel();
    ba.wake.cancel();
  }
};

awaitable<void> Read(std::shared_ptr<Session> s, tcp::socket& from, Pipe& pipe,
                     std::chrono::milliseconds delay) {
  (void)s;  // keeps the sockets alive while this pump runs
  std::vector<char> buf(64 * 1024);
  for (;;) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), asio::as_tuple(use_awaitable));
    if (ec) break;
    pipe.queue.push_back({Clock::now() + delay, std::vector<char>(buf.begin(), buf.begin() + n)});
    pipe.wake.cancel();
  }
  pipe.eof = true;
  pipe.wake.cancel();
}

awaitable<void> Write(std::shared_ptr<Session> s, tcp::socket& to, Pipe& pipe) {
  for (;;) {
    if (!to.is_open()) co_return;
    if (pipe.queue.empty()) {
      if (pipe.eof) {
        boost::system::error_code ec;
        to.shutdown(tcp::socket::shutdown_send, ec);
        co_return;
      }
      pipe.wake.expires_at(Clock::time_point::max());
      co_await pipe.wake.async_wait(asio::as_tuple(use_awaitable));
      continue;
    }
    if (Clock::now() < pipe.queue.front().due) {
      pipe.wake.expires_at(pipe.queue.front().due);
      co_await pipe.wake.async_wait(asio::as_tuple(use_awaitable));
      continue;
    }
    auto [ec, n] = co_await asio::async_write(to, asio::buffer(pipe.queue.front().data),
                                              asio::as_tuple(use_awaitable));
    if (ec) {
      s->Close();
      co_return;
    }
    pipe.queue.pop_front();
  }
}

awaitable<void> Serve(tcp::socket client, Options opt) {
  auto ex = client.get_executor();
  tcp::socket upstream(ex);
  auto [ec] = co_await upstream.async_connect(opt.to, asio::as_tuple(use_awaitable));
  if (ec) co_return;  // the client sees its connection closed
  client.set_option(tcp::no_delay(true));
  upstream.set_option(tcp::no_delay(true));
  auto s = std::make_shared<Session>(std::move(client), std::move(upstream));
  asio::co_spawn(ex, Read(s, s->a, s->ab, opt.delay), asio::detached);
  asio::co_spawn(ex, Write(s, s->b, s->ab), asio::detached);
  asio::co_spawn(ex, Read(s, s->b, s->ba, opt.delay), asio::detached);
  asio::co_spawn(ex, Write(s, s->a, s->ba), asio::detached);
}

awaitable<void> Accept(tcp::acceptor& acceptor, Options opt) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;
    }
    asio::co_spawn(acceptor.get_executor(), Serve(std::move(socket), opt), asio::detached);
  }
}

bool ParseEndpoint(const std::string& text, tcp::endpoint* out) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(text.substr(0, colon), ec);
  if (ec) return false;
  try {
    int port = std::stoi(text.substr(colon + 1));
    if (port < 0 || port > 65535) return false;
    *out = tcp::endpoint(addr, static_cast<unsigned short>(port));
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

bool ParseDelay(const std::string& text, std::chrono::milliseconds* out) {
  try {
    size_t used = 0;
    long long v = std::stoll(text, &used);
    std::string unit = text.substr(used);
    if (v < 0) return false;
    if (unit == "ms") {
      *out = std::chrono::milliseconds(v);
    } else if (unit == "s") {
      *out = std::chrono::seconds(v);
    } else {
      return false;
    }
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  bool have_listen = false, have_to = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "missing value for " << flag << "\n";
      return 2;
    }
    std::string value = argv[++i];
    bool ok = false;
    if (flag == "--listen") {
      ok = have_listen = ParseEndpoint(value, &opt.listen);
    } else if (flag == "--to") {
      ok = have_to = ParseEndpoint(value, &opt.to);
    } else if (flag == "--delay") {
      ok = ParseDelay(value, &opt.delay);
    }
    if (!ok) {
      std::cerr << "bad flag " << flag << " " << value
                << "\nusage: verge-delay-proxy --listen HOST:PORT --to HOST:PORT --delay 500ms\n";
      return 2;
    }
  }
  if (!have_listen || !have_to) {
    std::cerr << "usage: verge-delay-proxy --listen HOST:PORT --to HOST:PORT --delay 500ms\n";
    return 2;
  }
  try {
    asio::io_context io(1);
    tcp::acceptor acceptor(io, opt.listen);
    auto bound = acceptor.local_endpoint();
    std::printf("listening %s:%u\n", bound.address().to_string().c_str(), bound.port());
    std::fflush(stdout);
    asio::co_spawn(io, Accept(acceptor, opt), asio::detached);
    asio::signal_set stop(io, SIGINT, SIGTERM);
    stop.async_wait([&](auto, int) { io.stop(); });
    io.run();
  } catch (const std::exception& e) {
    std::cerr << "verge-delay-proxy: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
