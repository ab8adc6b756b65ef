// Status and Result<T>: the one error model of Verge.
//
// Every fallible operation that meets the outside world (network, disk, peer, config, user
// input) returns a Status or Result<T> carrying a code and a message a user can act on.
// Exceptions are used only at start-up in main(), and to carry third-party exceptions
// (yaml-cpp, nlohmann-json) to the nearest boundary, where they become a Status.
// Thread-safety: plain values.
#pragma once

#include <fmt/format.h>

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace verge {

enum class Code {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kUnauthenticated,
  kFailedPrecondition,
  kUnavailable,
  kDeadlineExceeded,
  kResourceExhausted,
  kDataLoss,
  kInternal,
};

// Stable lower_snake names, used in API error bodies and logs.
std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Prefixes the message with context, keeping the code: "reading node.key: permission denied".
  Status Wrap(std::string_view context) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename... Args>
Status Error(Code code, fmt::format_string<Args...> f, Args&&... args) {
  return Status(code, fmt::format(f, std::forward<Args>(args)...));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok());
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace verge

// Returns early from the enclosing function with the status of `expr` if it is not ok.
#define VERGE_RETURN_IF_ERROR(expr)     \
  do {                                  \
    if (auto _st = (expr); !_st.ok()) { \
      return _st;                       \
    }                                   \
  } while (0)

#define VERGE_CONCAT_INNER(a, b) a##b
#define VERGE_CONCAT(a, b) VERGE_CONCAT_INNER(a, b)
// Declares `lhs` from the value of a Result, or returns its status.
// `lhs` may be a declaration and `tmp` a generated name, so neither can be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define VERGE_ASSIGN_OR_RETURN(lhs, expr) \
  VERGE_ASSIGN_OR_RETURN_IMPL(VERGE_CONCAT(_res_, __LINE__), lhs, expr)
#define VERGE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)
