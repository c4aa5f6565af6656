#include "shared/stream/link.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "shared/base/check.h"
#include "shared/base/log.h"
#include "shared/wire/limits.h"

namespace ct {

void Link::start_session(const SessionConfig& cfg, TimePoint now) {
  session_ = std::make_unique<Session>(cfg, now);
  arm_if_earlier();
}

void Link::arm_if_earlier() noexcept {
  const TimePoint t = next_deadline();
  if (t < timer_.deadline()) timer_.arm(t);
}

void Link::on_timer(TimePoint now) noexcept {
  tick(now);
  if (!closed_) timer_.arm(next_deadline());
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
  if (!closed_) arm_if_earlier();
}

void Link::close(std::string reason) noexcept {
  if (closed_) return;
  closed_ = true;
  close_reason_ = std::move(reason);
  timer_.cancel();
  close_transport();
  owner_.on_link_closed(*this);
}

PlainLink::PlainLink(Loop& loop, Owner& owner, uint64_t id, UniqueFd fd,
                     std::unique_ptr<ShmRing> ring, ChannelWake wake, const SessionConfig& cfg,
                     TimePoint now)
    : Link(loop, owner, id), fd_(std::move(fd)), ring_(std::move(ring)), wake_(std::move(wake)) {
  CT_CHECK(wake_.valid());
  start_session(cfg, now);
  // The first batch takes whatever the other process wrote before we mapped
  // the ring (it could not know we sleep), then sets our sleeping flag.
  interest_ = EPOLLIN | EPOLLRDHUP | EPOLLOUT;
  loop_.add(fd_.get(), interest_, this);
  loop_.add(wake_.mine.get(), EPOLLIN | EPOLLET, &wake_handler_);
}

PlainLink::~PlainLink() = default;

void PlainLink::close_transport() noexcept {
  if (fd_) {
    loop_.del(fd_.get());
    fd_.reset();
  }
  if (wake_.mine) {
    loop_.del(wake_.mine.get());
    wake_.mine.reset();
    wake_.peer.reset();
  }
}

void PlainLink::update_interest() noexcept {
  if (closed_ || !fd_) return;
  // EPOLLOUT on a socketpair is ready at once: "run again next batch".
  const uint32_t want = EPOLLIN | EPOLLRDHUP | (more_input_ || ring_->corrupt() ? EPOLLOUT : 0u);
  if (want != interest_) {
    interest_ = want;
    loop_.mod(fd_.get(), want, this);
  }
}

void PlainLink::wake_peer() noexcept {
  // "A position moved". The counter is never read, so it only grows: one
  // per wake-up, it cannot reach the 2^64-2 where a write would refuse. A
  // peer that is gone shows up as EOF on the socketpair instead.
  const uint64_t one = 1;
  if (::write(wake_.peer.get(), &one, sizeof one) < 0) return;  // nothing to do: see above
}

void PlainLink::on_wake() noexcept {
  if (!closed_) serve(false, 0);
}

void PlainLink::on_io(uint32_t events) noexcept {
  if (closed_) return;
  bool gone = false;
  int err = 0;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
    // Nothing is written to the socketpair but its EOF; anything else is
    // read away and ignored (bounded: level-triggered epoll brings us back).
    uint8_t buf[512];
    for (int i = 0; i < 8; i++) {
      const ssize_t n = ::read(fd_.get(), buf, sizeof buf);
      if (n > 0 && static_cast<size_t>(n) == sizeof buf) continue;
      if (n > 0) break;
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      gone = true;
      err = n < 0 ? errno : 0;
      break;
    }
  }
  serve(gone, err);
}

void PlainLink::serve(bool gone, int err) noexcept {
  flush();  // the peer may have made room for our output
  if (closed_) return;
  pump_input();  // before EOF: what the peer wrote before it went is delivered
  if (closed_) return;
  if (ring_->corrupt()) {
    LOG_LINK(LOG_WARN, id_, "data channel ring: %s", ring_->corruption().c_str());
    close("data channel ring: " + ring_->corruption());
    return;
  }
  if (gone) {
    eof_ = true;
    session_->transport_closed(err == 0);
    after_input();
    if (!closed_) close(err == 0 ? "peer process closed the channel" : std::strerror(err));
    return;
  }
  update_interest();
}

void PlainLink::pump_input() noexcept {
  // At most one ring's worth per wake-up, in kReadChunk pieces: the forwarding
  // process writes a wrapper's data in one send per piece, and other fds get
  // their turn (F-06). What is left runs in the next batch (EPOLLOUT).
  size_t budget = ShmRing::kRingBytes;
  more_input_ = false;
  while (!closed_) {
    if (budget == 0) {
      more_input_ = true;
      break;
    }
    auto space = session_->input_space(std::min(budget, limits::kReadChunk));
    const size_t n = ring_->read(space.first(std::min(space.size(), budget)));
    session_->commit_input(n, Clock::now());
    if (n > 0) {
      budget -= n;
      after_input();
      continue;
    }
    if (ring_->corrupt() || ring_->wait_for_data()) break;  // empty: sleep until woken
  }
  if (!closed_ && fd_ && ring_->take_writer_sleeping()) wake_peer();
}

void PlainLink::flush() noexcept {
  if (closed_ || !fd_) return;
  bool wrote = false;
  while (session_->has_output() && !ring_->corrupt()) {
    const size_t n = ring_->write(session_->output());
    if (n > 0) {
      session_->output_written(n);
      wrote = true;
      continue;
    }
    if (ring_->corrupt() || ring_->wait_for_space()) break;  // full: the reader wakes us
  }
  if (wrote && ring_->take_reader_sleeping()) wake_peer();
  update_interest();  // corruption is handled in on_io, never under the owner's feet
  if (!session_->events().empty()) owner_.on_link_events(*this);  // kWritable after draining
}

}  // namespace ct
