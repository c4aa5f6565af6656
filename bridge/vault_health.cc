#include "bridge/vault_health.h"

#include <algorithm>

namespace ct::bridge {

UpstreamState upstream_state_of_http(int code) {
  switch (code) {
    case 200:
      return UpstreamState::kActive;
    case 429:
      return UpstreamState::kStandby;
    case 473:
      return UpstreamState::kPerfStandby;
    case 501:
      return UpstreamState::kUninitialized;
    case 503:
      return UpstreamState::kSealed;
    default:  // 472 (DR secondary) included: see the header
      return UpstreamState::kUnreachable;
  }
}

std::string health_request(const std::string& path, const std::string& host) {
  return "GET " + path + " HTTP/1.1\r\nHost: " + host +
         "\r\nUser-Agent: vault-bridge\r\nAccept: application/json\r\nConnection: close\r\n\r\n";
}

namespace {

// "HTTP/1.x DDD" then a space or the end (the CRLF is already cut off).
std::optional<int> status_code(const std::string& line) {
  if (line.size() < 12) return std::nullopt;
  if (line.compare(0, 9, "HTTP/1.1 ") != 0 && line.compare(0, 9, "HTTP/1.0 ") != 0)
    return std::nullopt;
  int code = 0;
  for (size_t i = 9; i < 12; i++) {
    const char c = line[i];
    if (c < '0' || c > '9') return std::nullopt;
    code = code * 10 + (c - '0');
  }
  if (line.size() > 12 && line[12] != ' ') return std::nullopt;
  return code;
}

}  // namespace

std::optional<UpstreamState> HealthAnswer::feed(Bytes b) {
  total_ += b.size();
  if (result_) return result_;
  for (const uint8_t c : b) {
    if (c == '\n') {
      // The line ends with CRLF; a bare LF is not HTTP.
      if (line_.empty() || line_.back() != '\r') {
        result_ = UpstreamState::kUnreachable;
        return result_;
      }
      line_.pop_back();
      const auto code = status_code(line_);
      result_ = code ? upstream_state_of_http(*code) : UpstreamState::kUnreachable;
      return result_;
    }
    if (line_.size() >= kMaxHealthStatusLine) {
      result_ = UpstreamState::kUnreachable;
      return result_;
    }
    line_.push_back(static_cast<char>(c));
  }
  return std::nullopt;
}

bool HealthPoller::defer(TimePoint now) {
  if (deferred_since_ == TimePoint::max()) deferred_since_ = now;
  if (now - deferred_since_ >= timeout_) return false;
  next_ = now + kHealthRetry;
  return true;
}

void HealthPoller::begin(TimePoint now) {
  deferred_since_ = TimePoint::max();
  in_flight_ = true;
  applied_ = false;
  answer_ = HealthAnswer{};
  began_ = now;
  deadline_ = now + timeout_;
}

std::optional<HealthChange> HealthPoller::feed(Bytes b) {
  if (!in_flight_) return std::nullopt;
  const auto r = answer_.feed(b);
  if (!r || applied_) return std::nullopt;
  applied_ = true;
  return set(*r);
}

std::optional<HealthChange> HealthPoller::end(TimePoint now) {
  if (!in_flight_) return std::nullopt;
  in_flight_ = false;
  deadline_ = TimePoint::max();
  // Every interval from the start of the last probe, but never back to back.
  if (next_ != TimePoint::max()) next_ = std::max(began_ + interval_, now);
  if (applied_) return std::nullopt;
  applied_ = true;
  return set(answer_.result().value_or(UpstreamState::kUnreachable));
}

void HealthPoller::abandon(TimePoint now) {
  if (!in_flight_) return;
  in_flight_ = false;
  applied_ = true;
  deadline_ = TimePoint::max();
  if (next_ != TimePoint::max()) next_ = now;
}

std::optional<HealthChange> HealthPoller::set(UpstreamState s) {
  if (s == state_) return std::nullopt;
  const HealthChange c{state_, s};
  state_ = s;
  return c;
}

}  // namespace ct::bridge
