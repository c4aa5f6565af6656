#include "shared/link.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "shared/limits.h"
#include "shared/log.h"

namespace ct {

void Link::start_session(const SessionConfig& cfg, TimePoint now) {
  session_ = std::make_unique<Session>(cfg, now);
}

void Link::tick(TimePoint now) noexcept {
  if (closed_ || !session_) return;
  session_->tick(now);
  after_input();
}

TimePoint Link::next_deadline() const {
  if (closed_ || !session_) return TimePoint::max();
  return session_->next_deadline();
}

void Link::after_input() noexcept {
  if (closed_ || !session_) return;
  if (!session_->events().empty()) owner_.on_link_events(*this);
  if (session_->dead() && !closed_) {
    flush();  // the GOAWAY carrying the reason, best effort
    close(std::string("session error ") + std::string(code_name(session_->error_code())));
  }
}

void Link::close(std::string reason) noexcept {
  if (closed_) return;
  closed_ = true;
  close_reason_ = std::move(reason);
  close_transport();
  owner_.on_link_closed(*this);
}

PlainLink::PlainLink(Loop& loop, Owner& owner, uint64_t id, UniqueFd fd, const SessionConfig& cfg,
                     TimePoint now)
    : Link(loop, owner, id), fd_(std::move(fd)) {
  start_session(cfg, now);
  loop_.add(fd_.get(), EPOLLIN | EPOLLRDHUP, this);
}

PlainLink::~PlainLink() = default;

void PlainLink::close_transport() noexcept {
  if (fd_) {
    loop_.del(fd_.get());
    fd_.reset();
  }
}

void PlainLink::on_io(uint32_t events) noexcept {
  if (closed_) return;
  if (events & EPOLLOUT) flush();
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
    size_t budget = limits::kReadChunk;
    while (budget > 0 && !closed_) {
      // The whole budget in one read when the channel has it: the forwarding
      // process then writes a wrapper's data in one send per wake-up, not one
      // per 64 KiB (each send wakes the wrapper's reader).
      auto space = session_->input_space(budget);
      const ssize_t n = ::read(fd_.get(), space.data(), space.size());
      if (n > 0) {
        session_->commit_input(static_cast<size_t>(n), Clock::now());
        budget -= std::min(budget, static_cast<size_t>(n));
        after_input();
        // A short read emptied the socket: the next read would only say
        // EAGAIN (a third of all reads in make bench-bulk). Level-triggered
        // epoll reports what arrives later, EOF included.
        if (static_cast<size_t>(n) < space.size()) break;
        continue;
      }
      session_->commit_input(0, Clock::now());
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      session_->transport_closed(n == 0);
      after_input();
      if (!closed_) close(n == 0 ? "peer process closed the channel" : std::strerror(errno));
      return;
    }
  }
}

void PlainLink::flush() noexcept {
  if (closed_ || !fd_) return;
  while (session_->has_output()) {
    Bytes out = session_->output();
    const ssize_t n = ::send(fd_.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      session_->output_written(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    // The peer process is gone; the read side reports it.
    break;
  }
  const bool want = session_->has_output();
  if (want != want_out_) {
    want_out_ = want;
    loop_.mod(fd_.get(), EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u), this);
  }
  if (!session_->events().empty()) owner_.on_link_events(*this);  // kWritable after draining
}

}  // namespace ct
