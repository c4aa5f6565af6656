// One shape for fallible calls: Result<T> holds a T or, on failure, an Error;
// Result<void> holds only the Error (not "Status": that name is the STATUS
// message's). An Error says why in words (for the log line or the usage error
// that reports it) and, when a syscall failed, its errno, so a caller can
// still tell EMFILE from ECONNREFUSED.
//   Result<UniqueFd> listen_tcp(...);  if (!r) LOG_WARN("%s", r.what().c_str());
//   Result<void> check(...) { if (bad) return fail("why"); return {}; }
#pragma once

#include <cstring>
#include <string>
#include <utility>
#include <variant>

#include "shared/base/check.h"

namespace ct {

struct Error {
  std::string what;
  int code = 0;  // errno of the failed syscall; 0 when none failed
};

inline Error fail(std::string what) {
  return Error{std::move(what), 0};
}
// "<what>: <strerror(code)>" keeps the text the old callers logged.
inline Error fail_errno(int code, const std::string& what) {
  return Error{what.empty() ? std::string(std::strerror(code)) : what + ": " + std::strerror(code),
               code};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}      // NOLINT: implicit
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  // Only on success.
  T& value() & {
    CT_CHECK(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    CT_CHECK(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    CT_CHECK(ok());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  // Only on failure.
  const Error& error() const {
    CT_CHECK(!ok());
    return std::get<1>(v_);
  }
  const std::string& what() const { return error().what; }
  // The failure, for a caller that passes it on unchanged.
  Result<void> status() const;

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;                                    // success
  Result(Error e) : error_(std::move(e)), ok_(false) {}  // NOLINT: fail("...") converts
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  // Only on failure.
  const Error& error() const {
    CT_CHECK(!ok_);
    return error_;
  }
  const std::string& what() const { return error().what; }

 private:
  Error error_;
  bool ok_ = true;
};

template <class T>
Result<void> Result<T>::status() const {
  if (ok()) return {};
  return error();
}

}  // namespace ct
