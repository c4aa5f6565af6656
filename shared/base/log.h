// One line per event on stderr: "<time> <daemon>[<process>] <event ...>".
// Callers put conn=N stream=M first so lines grep well (LOG_LINK does it for
// conn=N). Never log payload or
// key material. Writing never blocks the loop: when stderr is a pipe it is made
// non-blocking and a line that does not fit is dropped and counted (FI-26).
#pragma once

#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <string_view>

namespace ct::log {

enum Level : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void init(std::string_view daemon, std::string_view process, Level level);
void set_process(std::string_view process);
void set_level(Level level);
Level level();
// Parses "error", "warn", "info", "debug"; false when unknown.
bool parse_level(std::string_view s, Level* out);
uint64_t dropped_lines();

void msg(Level l, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// The same, with ": <strerror(err)>" appended.
void msg_errno(Level l, int err, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

// At most one line per interval for one kind of event that a peer can cause
// at will (a refused connection, a failed handshake): an attacker must not
// control our log volume. allow() says whether a line may be written now and
// how many were held back since the last one, which that line reports.
class Throttle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Throttle(std::chrono::milliseconds interval = std::chrono::seconds(10))
      : interval_(interval) {}
  bool allow(Clock::time_point now, uint64_t* suppressed) {
    if (armed_ && now < next_) {
      held_++;
      return false;
    }
    *suppressed = held_;
    held_ = 0;
    armed_ = true;
    next_ = now + interval_;
    return true;
  }

 private:
  std::chrono::milliseconds interval_;
  Clock::time_point next_{};
  uint64_t held_ = 0;
  bool armed_ = false;
};

}  // namespace ct::log

// A line through a Throttle: "<text> (N more like this since the last line)".
// A level the log does not print does not spend the throttle's allowance.
#define LOG_THROTTLED(lvl, throttle, fmt, ...)                                             \
  do {                                                                                     \
    uint64_t ct_held_ = 0;                                                                 \
    if (::ct::log::level() >= (lvl) &&                                                     \
        (throttle).allow(::ct::log::Throttle::Clock::now(), &ct_held_))                    \
      ::ct::log::msg((lvl), fmt " (%llu more like this since the last line)", __VA_ARGS__, \
                     static_cast<unsigned long long>(ct_held_));                           \
  } while (0)
#define LOG_WARN_THROTTLED(throttle, fmt, ...) \
  LOG_THROTTLED(::ct::log::kWarn, throttle, fmt, __VA_ARGS__)
// For routine events that can come in runs.
#define LOG_INFO_THROTTLED(throttle, fmt, ...) \
  LOG_THROTTLED(::ct::log::kInfo, throttle, fmt, __VA_ARGS__)

#define LOG_ERROR(...) ::ct::log::msg(::ct::log::kError, __VA_ARGS__)
#define LOG_WARN(...) ::ct::log::msg(::ct::log::kWarn, __VA_ARGS__)
#define LOG_WARN_ERRNO(err, ...) ::ct::log::msg_errno(::ct::log::kWarn, err, __VA_ARGS__)
#define LOG_INFO(...)                                                                          \
  do {                                                                                         \
    if (::ct::log::level() >= ::ct::log::kInfo) ::ct::log::msg(::ct::log::kInfo, __VA_ARGS__); \
  } while (0)
#define LOG_DEBUG(...)                                                                           \
  do {                                                                                           \
    if (::ct::log::level() >= ::ct::log::kDebug) ::ct::log::msg(::ct::log::kDebug, __VA_ARGS__); \
  } while (0)

// A line about one link (a TLS connection or a data channel): "conn=<id> "
// before the text, so every per-link line greps alike. `LOG` is one of the
// macros above; LOG_LINK_THROTTLED is LOG_WARN_THROTTLED's twin.
//   LOG_LINK(LOG_INFO, l.id(), "bridge connected: %s", subject.c_str());
#define LOG_LINK(LOG, id, fmt, ...) \
  LOG("conn=%llu " fmt, static_cast<unsigned long long>(id) __VA_OPT__(, ) __VA_ARGS__)
#define LOG_LINK_THROTTLED(throttle, id, fmt, ...) \
  LOG_WARN_THROTTLED(throttle, "conn=%llu " fmt,   \
                     static_cast<unsigned long long>(id) __VA_OPT__(, ) __VA_ARGS__)
