// TlsSocket: TLS over a non-blocking TCP socket, with OpenSSL reading and writing the socket
// itself, as an Asio AsyncStream that Beast's HTTP and WebSocket code can sit on.
//
// Why not asio::ssl::stream: it runs OpenSSL over a memory BIO pair and keeps four 17 KB
// buffers per connection (two in the stream, one per direction in the BIO pair), all alive for
// the life of the connection. With 100,000 node links that alone is 6.8 GB. Here OpenSSL owns
// the only buffers, and SSL_MODE_RELEASE_BUFFERS frees them whenever the link is idle, which
// for a heartbeat link is almost always.
//
// Threading: like any Asio stream, one read and one write may be outstanding at once, and all
// operations must run on the same strand (OpenSSL's SSL object is not thread-safe). Closing the
// socket (a deadline, Beast's idle timeout) aborts pending operations; later ones fail at once
// and never touch the closed descriptor, which may already belong to another connection.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/role.hpp>
#include <cerrno>
#include <memory>
#include <utility>

namespace verge {

class TlsSocket {
 public:
  using tcp = boost::asio::ip::tcp;
  using error_code = boost::system::error_code;
  using executor_type = tcp::socket::executor_type;
  using next_layer_type = tcp::socket;

  enum class Role { kClient, kServer };

  // REQUIRES: `socket` is connected. Check ok() before use: SSL_new can fail (out of memory).
  TlsSocket(tcp::socket socket, SSL_CTX* ctx, Role role) : socket_(std::move(socket)) {
    ssl_.reset(SSL_new(ctx));
    error_code ec;
    socket_.non_blocking(true, ec);
    socket_.native_non_blocking(true, ec);
    if (!ssl_ || ec || SSL_set_fd(ssl_.get(), socket_.native_handle()) != 1) {
      ssl_.reset();
      return;
    }
    // Beast retries a write with the same bytes from wherever they are now, in pieces.
    SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    if (role == Role::kServer)
      SSL_set_accept_state(ssl_.get());
    else
      SSL_set_connect_state(ssl_.get());
  }

  TlsSocket(TlsSocket&&) noexcept = default;
  TlsSocket& operator=(TlsSocket&&) noexcept = default;

  bool ok() const { return ssl_ != nullptr; }
  executor_type get_executor() { return socket_.get_executor(); }
  tcp::socket& next_layer() { return socket_; }
  SSL* native_handle() { return ssl_.get(); }

  template <typename Token>
  auto async_handshake(Token&& token) {
    return Start(
        [](SSL* ssl, size_t& n) {
          n = 0;
          return SSL_do_handshake(ssl);
        },
        std::forward<Token>(token));
  }

  template <typename MutableBuffers, typename Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    boost::asio::mutable_buffer first;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::mutable_buffer b = *it;
      if (b.size() > 0) {
        first = b;
        break;
      }
    }
    return Start(
        [first](SSL* ssl, size_t& n) {
          n = 0;
          if (first.size() == 0) return 1;
          return SSL_read_ex(ssl, first.data(), first.size(), &n);
        },
        std::forward<Token>(token));
  }

  template <typename ConstBuffers, typename Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return Start(
        [buffers](SSL* ssl, size_t& n) {
          n = 0;
          // Beast hands over a frame as header + payload: gather them so that a small frame is
          // one TLS record, not two (22 bytes of overhead each, on every heartbeat).
          boost::asio::const_buffer first;
          size_t nonempty = 0;
          for (auto it = boost::asio::buffer_sequence_begin(buffers);
               it != boost::asio::buffer_sequence_end(buffers) && nonempty < 2; ++it) {
            boost::asio::const_buffer b = *it;
            if (b.size() == 0) continue;
            if (nonempty++ == 0) first = b;
          }
          if (nonempty == 0) return 1;
          if (nonempty == 1) return SSL_write_ex(ssl, first.data(), first.size(), &n);
          thread_local std::array<char, 16 * 1024> scratch;
          size_t size = boost::asio::buffer_copy(boost::asio::buffer(scratch), buffers);
          return SSL_write_ex(ssl, scratch.data(), size, &n);
        },
        std::forward<Token>(token));
  }

  // Sends close_notify without waiting for the peer's: the connection is closed next anyway.
  template <typename Token>
  auto async_shutdown(Token&& token) {
    return Start(
        [](SSL* ssl, size_t& n) {
          n = 0;
          if (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN) return 1;
          int r = SSL_shutdown(ssl);
          return r >= 0 ? 1 : r;
        },
        std::forward<Token>(token));
  }

  // Drops the connection without a close_notify. Safe to call repeatedly.
  void Close() {
    error_code ignore;
    socket_.shutdown(tcp::socket::shutdown_both, ignore);
    socket_.close(ignore);
  }

 private:
  struct SslFree {
    void operator()(SSL* s) const { SSL_free(s); }
  };

  enum class Want { kNone, kRead, kWrite };

  struct Step {
    Want want = Want::kNone;
    error_code ec;
    size_t n = 0;
  };

  static Step Wait(Want want) {
    Step s;
    s.want = want;
    return s;
  }
  static Step Done(error_code ec, size_t n = 0) {
    Step s;
    s.ec = ec;
    s.n = n;
    return s;
  }

  // Maps an OpenSSL result onto "wait for the socket" or a final result.
  Step Classify(int ret, size_t n) {
    if (ret > 0) return Done({}, n);
    switch (SSL_get_error(ssl_.get(), ret)) {
      case SSL_ERROR_WANT_READ:
        return Wait(Want::kRead);
      case SSL_ERROR_WANT_WRITE:
        return Wait(Want::kWrite);
      case SSL_ERROR_ZERO_RETURN:
        return Done(boost::asio::error::eof);
      case SSL_ERROR_SYSCALL: {
        if (unsigned long e = ERR_get_error())
          return Done(error_code(static_cast<int>(e), boost::asio::error::get_ssl_category()));
        int err = errno;
        if (err == 0) return Done(boost::asio::ssl::error::stream_truncated);
        return Done(error_code(err, boost::system::system_category()));
      }
      default:
        return Done(
            error_code(static_cast<int>(ERR_get_error()), boost::asio::error::get_ssl_category()));
    }
  }

  // One OpenSSL call, retried whenever the socket becomes ready for what OpenSSL wants.
  template <typename Fn>
  struct Op {
    TlsSocket* self_stream;
    Fn fn;
    bool waited = false;
    bool deferred = false;
    Step result{};

    template <typename Self>
    void operator()(Self& self, error_code wait_ec = {}) {
      if (deferred) {
        self.complete(result.ec, result.n);
        return;
      }
      TlsSocket& s = *self_stream;
      Step step;
      if (wait_ec) {
        step.ec = wait_ec;
      } else if (!s.ssl_ || !s.socket_.is_open()) {
        step.ec = boost::asio::error::operation_aborted;
      } else {
        ERR_clear_error();
        errno = 0;
        size_t n = 0;
        int ret = fn(s.ssl_.get(), n);
        step = s.Classify(ret, n);
      }
      if (step.want == Want::kRead || step.want == Want::kWrite) {
        waited = true;
        s.socket_.async_wait(
            step.want == Want::kRead ? tcp::socket::wait_read : tcp::socket::wait_write,
            std::move(self));
        return;
      }
      if (!waited) {
        // Finished inside the initiating call: complete as if posted, as Asio requires.
        deferred = true;
        result = step;
        boost::asio::post(s.socket_.get_executor(), std::move(self));
        return;
      }
      self.complete(step.ec, step.n);
    }
  };

  template <typename Fn, typename Token>
  auto Start(Fn fn, Token&& token) {
    return boost::asio::async_compose<Token, void(error_code, size_t)>(Op<Fn>{this, std::move(fn)},
                                                                       token, socket_);
  }

  tcp::socket socket_;
  std::unique_ptr<SSL, SslFree> ssl_;
};

// Beast's WebSocket close ends with these, found by argument-dependent lookup.
inline void teardown(boost::beast::role_type, TlsSocket& s, boost::system::error_code& ec) {
  s.Close();
  ec = {};
}

template <typename Handler>
void async_teardown(boost::beast::role_type, TlsSocket& s, Handler&& handler) {
  s.async_shutdown(
      [&s, h = std::forward<Handler>(handler)](boost::system::error_code, size_t) mutable {
        s.Close();
        std::move(h)(boost::system::error_code{});
      });
}

}  // namespace verge
