#include "bridge/dial.h"

#include <algorithm>
#include <utility>

#include "shared/wire/limits.h"

namespace ct::bridge {

DialFailure classify_dial_failure(const std::string& why) {
  if (why.find("refused") != std::string::npos) return {"refused", false};
  if (why.find("reset") != std::string::npos) return {"reset", false};
  if (why.find("unreachable") != std::string::npos || why.find("No route") != std::string::npos)
    return {"no route", false};
  if (why.find("timed out") != std::string::npos || why.find("no answer") != std::string::npos)
    return {"timeout", false};
  if (why.find("resolve") != std::string::npos) return {"lookup", false};
  return {"network", false};
}

DialFailure classify_link_failure(const std::string& why) {
  if (why.find("certificate") != std::string::npos || why.find("pin") != std::string::npos)
    return {"certificate", true};
  // The broker's end went away before the handshake did any work (it is
  // restarting): as cheap as a refused connection.
  if (why.find("reset by peer") != std::string::npos ||
      why.find("peer closed") != std::string::npos)
    return {"reset", false};
  return {"tls", true};
}

Redialer::Redialer(Jitter jitter) : jitter_(std::move(jitter)) {}

void Redialer::dial_soon(TimePoint now) {
  // A planned hunt or sync dial (seconds away) gives way: dial now.
  if (state_ == State::kDialing || draining_) return;
  next_dial_ = now;
  state_ = State::kWaiting;
}

bool Redialer::due(TimePoint now, bool satisfied) {
  if (state_ != State::kWaiting || now < next_dial_ || draining_) return false;
  if (satisfied) {
    state_ = State::kIdle;
    return false;
  }
  state_ = State::kDialing;
  return true;
}

bool Redialer::on_dialed() {
  if (state_ != State::kDialing) return false;
  state_ = State::kIdle;
  return true;
}

bool Redialer::on_dial_failed(const std::string& why, TimePoint now) {
  if (state_ != State::kDialing) return false;
  state_ = State::kIdle;
  retry_after(classify_dial_failure(why), "cannot reach the broker", why, now);
  return true;
}

void Redialer::on_link_closed(uint64_t conn, bool was_up, const std::string& why, bool satisfied,
                              TimePoint now) {
  // A planned dial (a sync probe 2-4 s away) does not delay the redial of a
  // lost link: retry_after keeps whichever comes first.
  if (satisfied || state_ == State::kDialing) return;
  if (was_up)
    retry_after({"link lost", false}, "link to the broker lost", why, now);
  else
    retry_after(classify_link_failure(why),
                ("conn=" + std::to_string(conn) + " TLS with the broker failed").c_str(), why, now);
}

void Redialer::on_duplicate(TimePoint now) {
  hunt_++;
  hunt(now);
  LOG_INFO_THROTTLED(
      hunt_log_,
      "reached a broker instance already linked (%u in a row): dialling again in "
      "%lld ms for the missing one",
      hunt_,
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(last_delay_).count()));
}

void Redialer::hunt(TimePoint now) {
  if (state_ != State::kIdle || draining_) return;
  using std::chrono::milliseconds;
  const auto ms = [](Duration d) -> long long {
    return std::chrono::duration_cast<milliseconds>(d).count();
  };
  long long delay = 0;
  if (hunt_ < limits::kHuntFastDials) {
    delay = jitter_(ms(limits::kHuntDialMin), ms(limits::kHuntDialMax));
  } else {
    // Doubling from 1 s to the sync dial's top (limits.h says why).
    const unsigned k = std::min(hunt_ - limits::kHuntFastDials, 5u);
    const auto cap =
        std::min<Duration>(limits::kHuntBackoffCap, limits::kRedialBackoffBase * (1u << k));
    delay = std::max(ms(limits::kRedialMin), jitter_(0, ms(cap)));
  }
  last_delay_ = milliseconds(delay);
  next_dial_ = now + milliseconds(delay);
  state_ = State::kWaiting;
}

void Redialer::sync(TimePoint now) {
  if (state_ != State::kIdle || draining_) return;
  using std::chrono::milliseconds;
  const long long delay =
      jitter_(std::chrono::duration_cast<milliseconds>(limits::kSyncDialMin).count(),
              std::chrono::duration_cast<milliseconds>(limits::kSyncDialMax).count());
  last_delay_ = milliseconds(delay);
  next_dial_ = now + milliseconds(delay);
  state_ = State::kWaiting;
}

void Redialer::drain() {
  draining_ = true;
  // A planned dial will never be made: no deadline to wake the loop for. A
  // dial in flight still gets its answer (on_dialed), which ends it.
  if (state_ == State::kWaiting) state_ = State::kIdle;
}

void Redialer::retry_after(DialFailure f, const char* what, const std::string& why, TimePoint now) {
  if (draining_) return;
  using std::chrono::milliseconds;
  const auto ms = [](Duration d) -> long long {
    return std::chrono::duration_cast<milliseconds>(d).count();
  };
  long long delay = 0;
  if (f.expensive) {
    attempt_++;
    const auto cap = std::min<Duration>(
        limits::kRedialBackoffCap, limits::kRedialBackoffBase * (1u << std::min(attempt_ - 1, 5u)));
    delay = std::max(ms(limits::kRedialMin), jitter_(0, ms(cap)));
  } else {
    delay = jitter_(ms(limits::kRedialMin), ms(limits::kRedialMax));
  }
  last_delay_ = milliseconds(delay);
  const TimePoint at = now + milliseconds(delay);
  next_dial_ = state_ == State::kWaiting ? std::min(next_dial_, at) : at;
  state_ = State::kWaiting;
  log::Throttle& t = retry_log_[f.cls];
  LOG_WARN_THROTTLED(t, "%s (%s): %s; reconnecting in %lld ms (%s, attempt %u)", what, f.cls,
                     why.c_str(), delay, f.expensive ? "backing off" : "cheap to retry", attempt_);
}

}  // namespace ct::bridge
