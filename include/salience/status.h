// salience: Status, the error type of every public entry point.
//
// The library never aborts and never throws across its API. Each entry point
// validates its arguments once and returns a Status whose message names the
// argument and the expected versus the actual value, e.g.
//   "k.shape[3] (head_dim): expected 64 (q.shape[3]), got 32".
#pragma once

#include <string>
#include <utility>

namespace salience {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,   // a shape, stride, dtype, pointer or option is wrong
  kUnsupported,       // valid in principle, not implemented (e.g. a dtype)
  kOutOfRange,        // a size or index overflows or lies beyond a tensor
  kResourceExhausted  // a workspace allocation failed
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "ok", or "<code name>: <message>".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

const char* StatusCodeName(StatusCode code);

}  // namespace salience
