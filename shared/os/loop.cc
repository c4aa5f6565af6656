#include "shared/os/loop.h"

#include <sys/signalfd.h>

#include <algorithm>
#include <cerrno>

#include "shared/base/check.h"
#include "shared/base/log.h"

namespace ct {

Loop::Loop() : epfd_(epoll_create1(EPOLL_CLOEXEC)) {
  if (!epfd_) {
    LOG_WARN_ERRNO(errno, "epoll_create1");
    std::abort();
  }
}

void Loop::add(int fd, uint32_t events, Handler* h) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  // Failure here means a bug (bad fd, double add) or ENOMEM: nothing sane to do.
  CT_CHECK(epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) == 0);
}

void Loop::mod(int fd, uint32_t events, Handler* h) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  CT_CHECK(epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev) == 0);
}

void Loop::del(int fd) {
  (void)epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void Loop::watch_signals(std::initializer_list<int> signals, std::function<void(int)> on_signal) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  CT_CHECK(sigprocmask(SIG_BLOCK, &set, nullptr) == 0);
  signals_ = std::make_unique<SignalHandler>();
  signals_->fd.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  CT_CHECK(signals_->fd.valid());
  signals_->fn = std::move(on_signal);
  add(signals_->fd.get(), EPOLLIN, signals_.get());
}

void Loop::SignalHandler::on_io(uint32_t) noexcept {
  signalfd_siginfo si;
  for (int i = 0; i < 64; i++) {
    const ssize_t n = ::read(fd.get(), &si, sizeof si);
    if (n != static_cast<ssize_t>(sizeof si)) break;
    fn(static_cast<int>(si.ssi_signo));
  }
}

bool Loop::run_once(TimePoint deadline) {
  if (stopped_) return false;
  deadline = std::min(deadline, timers_.next());
  int timeout_ms = -1;
  if (deadline != TimePoint::max()) {
    const auto now = Clock::now();
    if (deadline <= now) {
      timeout_ms = 0;
    } else {
      // Round up so a deadline is never polled early in a busy loop.
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
      timeout_ms = static_cast<int>(std::min<long long>(ms, 60'000));
    }
  }
  epoll_event evs[256];
  const int n = epoll_wait(epfd_.get(), evs, 256, timeout_ms);
  if (n < 0 && errno != EINTR) {
    LOG_WARN_ERRNO(errno, "epoll_wait");
    std::abort();
  }
  for (int i = 0; i < n; i++) static_cast<Handler*>(evs[i].data.ptr)->on_io(evs[i].events);
  // After the events: a deadline met by this batch's input does not fire.
  if (!stopped_) timers_.run_due(Clock::now());
  if (after_batch_) after_batch_();
  graveyard_.clear();
  return !stopped_;
}

}  // namespace ct
