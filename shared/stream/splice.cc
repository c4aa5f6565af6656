#include "shared/stream/splice.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include "shared/base/check.h"
#include "shared/base/log.h"
#include "shared/os/net.h"
#include "shared/stream/unsent.h"
#include "shared/wire/limits.h"

namespace ct {

namespace {
constexpr size_t kReadMax = 64 * 1024;
constexpr int kReadRounds = 4;  // at most 256 KiB per wake-up: the loop stays fair

// A peer that vanished without FIN or RST is found even on a stream that
// carries nothing (limits.h). Best effort: a socket that refuses keeps working.
void set_keepalive(int fd) noexcept {
  const int one = 1, idle = limits::kStreamKeepIdleSec, intvl = limits::kStreamKeepIntervalSec,
            cnt = limits::kStreamKeepCount;
  (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

// A fixed send buffer (limits.h kSpliceSendBuffer): what a stalled reader
// leaves queued in the kernel stays bounded. Best effort, like keepalive.
void set_send_buffer(int fd) noexcept {
  const int bytes = limits::kSpliceSendBuffer;
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}

// SO_LINGER {1, 0}: close() sends RST and discards what is queued.
void set_reset_on_close(int fd, bool on) noexcept {
  const linger l{on ? 1 : 0, 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}
}  // namespace

Splice::Splice(Loop& loop, Owner& owner, Link& link, uint32_t id, UniqueFd fd, bool connecting,
               Code aborted)
    : loop_(loop),
      owner_(owner),
      link_(link),
      id_(id),
      fd_(std::move(fd)),
      connecting_(connecting),
      aborted_(aborted) {
  // Armed from the start: if this process dies (kill -9, OOM), the kernel's
  // close must abort the connection. A plain FIN would let the far end take
  // a truncated close-delimited body for a whole one. Cleared in finish() for
  // a clean end, so that queued bytes are delivered.
  set_reset_on_close(fd_.get(), true);
  set_keepalive(fd_.get());
  set_send_buffer(fd_.get());
  interest_ = connecting_ ? EPOLLOUT : EPOLLIN | EPOLLRDHUP;
  loop_.add(fd_.get(), interest_, this);
}

Splice::~Splice() = default;

void Splice::update_interest() noexcept {
  if (done_ || !fd_) return;
  uint32_t want = 0;
  if (connecting_) {
    want = EPOLLOUT;
  } else {
    if (!read_eof_ && !read_blocked_) want |= EPOLLIN | EPOLLRDHUP;
    if (out_pos_ < out_.size()) want |= EPOLLOUT;
  }
  // Nothing wanted: epoll still reports EPOLLERR and EPOLLHUP, and level-
  // triggered it would report them on every wait while we cannot act (no
  // credit): a busy loop. Edge-triggered, a hang-up wakes us once; an error
  // (an RST) wakes us once and is handled in on_io whatever the credit.
  if (want == 0) want = EPOLLET;
  if (want != interest_) {
    interest_ = want;
    loop_.mod(fd_.get(), want, this);
  }
}

void Splice::on_io(uint32_t events) noexcept {
  if (done_) return;
  if (connecting_) {
    const int err = socket_error(fd_.get());
    if (err != 0) {
      // One line per 10 s: while OpenBao is down every wrapper fails here,
      // and wrappers must not decide our log volume.
      static log::Throttle connect_failed_log;
      LOG_INFO_THROTTLED(connect_failed_log, "stream=%u upstream connect failed: %s", id_,
                         std::strerror(err));
      if (!link_.closed()) link_.session().reset(id_, Code::kUpstreamRefused);
      return finish(false);
    }
    connecting_ = false;
    pump_write();
    if (!done_) pump_read();
    return update_interest();
  }
  if ((events & EPOLLERR) && fail_on_socket_error()) return;
  if (events & EPOLLOUT) pump_write();
  if (done_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) pump_read();
  if (!done_) update_interest();
}

bool Splice::fail_on_socket_error() noexcept {
  // Read it now, not when credit returns: the far end aborted, and what it
  // sent before is void. Resetting the stream at once also frees the other
  // side's socket, which may be a wrapper that stopped reading.
  const int err = socket_error(fd_.get());
  if (err == 0) return false;
  LOG_DEBUG("stream=%u socket error: %s", id_, std::strerror(err));
  if (!link_.closed()) link_.session().reset(id_, aborted_);
  finish(true);
  return true;
}

void Splice::pump_read() noexcept {
  if (read_eof_ || done_ || connecting_ || link_.closed()) return;
  Session& s = link_.session();
  const size_t cap = s.send_capacity(id_);
  if (cap == 0) {
    read_blocked_ = true;
    return update_interest();
  }
  read_blocked_ = false;
  uint8_t buf[kReadMax];
  ssize_t n = 0;
  size_t left = cap;
  // Up to kReadRounds reads per wake-up while there is credit and data: one
  // epoll round trip per 64 KiB was a large share of bulk transfers.
  for (int round = 0; round < kReadRounds && left > 0; round++) {
    n = ::read(fd_.get(), buf, std::min(left, sizeof buf));
    if (n <= 0) break;
    s.send(id_, Bytes(buf, static_cast<size_t>(n)), false);
    if (static_cast<size_t>(n) < sizeof buf) return;  // drained for now
    // Asked again, not counted down: frame headers take output room too, so
    // the capacity can fall by more than the bytes sent (a crash with 100
    // busy streams when the session's output was near its high-water mark).
    left = s.send_capacity(id_);
    if (left == 0) {
      read_blocked_ = true;  // kWritable resumes us
      return;
    }
  }
  if (n > 0) return;
  if (n == 0) {
    read_eof_ = true;
    s.close_write(id_);
    return maybe_finish();
  }
  if (errno == EAGAIN || errno == EINTR) return;
  // ECONNRESET and friends: the far end aborted; so do we, on the stream.
  s.reset(id_, connecting_ ? Code::kUpstreamRefused : aborted_);
  finish(true);
}

void Splice::pump_write() noexcept {
  if (!pend_.empty()) {
    // Straight from the session's input buffer; the rest is copied below.
    CT_CHECK(out_pos_ == out_.size() && pend_epoch_ == link_.session().input_epoch());
    iovec iov[64];
    size_t total = 0, k = 0;
    for (; k < pend_.size() && k < std::size(iov); k++) {
      iov[k] = {const_cast<uint8_t*>(pend_[k].data()), pend_[k].size()};
      total += pend_[k].size();
    }
    msghdr mh{};
    mh.msg_iov = iov;
    mh.msg_iovlen = k;
    const ssize_t n = ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      pend_.clear();
      if (!link_.closed()) link_.session().reset(id_, aborted_);
      return finish(true);
    }
    size_t skip = n > 0 ? static_cast<size_t>(n) : 0;
    if (skip > 0 && !link_.closed()) link_.session().consume(id_, skip);
    out_.clear();
    out_pos_ = 0;
    for (Bytes b : pend_) {
      const size_t s = std::min(skip, b.size());
      skip -= s;
      append_unsent(out_, out_pos_, b.subspan(s));
    }
    pend_.clear();
    if (static_cast<size_t>(n > 0 ? n : 0) < total) return update_interest();
  }
  while (out_pos_ < out_.size() && !done_) {
    const ssize_t n = ::send(fd_.get(), out_.data() + out_pos_, out_.size() - out_pos_,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      const auto wrote = static_cast<size_t>(n);
      out_pos_ += wrote;
      // Our own prefix was never the stream's: credit only stream bytes.
      const size_t ours = std::min(wrote, prefix_left_);
      prefix_left_ -= ours;
      if (wrote > ours && !link_.closed()) link_.session().consume(id_, wrote - ours);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return update_interest();
    if (!link_.closed()) link_.session().reset(id_, aborted_);
    return finish(true);
  }
  out_.clear();
  out_pos_ = 0;
  if (peer_fin_ && !write_shut_) {
    write_shut_ = true;
    ::shutdown(fd_.get(), SHUT_WR);
    maybe_finish();
  }
}

void Splice::set_prefix(std::vector<uint8_t> bytes) noexcept {
  CT_CHECK(out_.empty() && pend_.empty());
  prefix_left_ = bytes.size();
  out_ = std::move(bytes);
  out_pos_ = 0;
  if (!dirty_ && !connecting_ && !out_.empty()) {
    dirty_ = true;
    owner_.on_splice_dirty(*this);
  }
}

void Splice::on_data(Bytes data) noexcept {
  if (done_) return;
  // Coalesced: the frames of one batch leave in one send() (flush()), not one
  // send() per 16 KiB frame (make bench's profile), and without a copy when
  // nothing is queued ahead of them (make bench-bulk's profile: the copy was
  // the broker's largest single cost).
  if (out_pos_ == out_.size() && !connecting_ && !link_.closed()) {
    const uint64_t epoch = link_.session().input_epoch();
    CT_CHECK(pend_.empty() || pend_epoch_ == epoch);  // flushed before the next read
    pend_epoch_ = epoch;
    pend_.push_back(data);
  } else {
    append_unsent(out_, out_pos_, data);
  }
  if (!dirty_ && !connecting_) {
    dirty_ = true;
    owner_.on_splice_dirty(*this);
  }
}

void Splice::flush() noexcept {
  dirty_ = false;
  if (done_ || connecting_) return;
  pump_write();
  if (!done_) update_interest();
}

void Splice::on_fin() noexcept {
  if (done_) return;
  peer_fin_ = true;
  if (!connecting_) pump_write();
}

void Splice::on_reset(Code code) noexcept {
  if (done_) return;
  LOG_DEBUG("stream=%u reset: %s", id_, std::string(code_name(code)).c_str());
  finish(true);
}

void Splice::on_writable() noexcept {
  if (done_ || !read_blocked_) return;
  pump_read();
  update_interest();
}

void Splice::abort() noexcept {
  finish(true);
}

void Splice::maybe_finish() noexcept {
  if (read_eof_ && write_shut_) finish(false);
}

void Splice::finish(bool abortive) noexcept {
  if (done_) return;
  done_ = true;
  pend_.clear();
  if (fd_) {
    loop_.del(fd_.get());
    // Abortive: the linger armed at the start makes close() send RST, so the
    // other side sees an abort, not EOF. Clean: both FINs were exchanged and
    // what is still queued must reach the peer.
    if (!abortive) set_reset_on_close(fd_.get(), false);
    fd_.reset();
  }
  owner_.on_splice_done(*this);
}

Splice* SpliceTable::add(Link& link, uint32_t id, UniqueFd fd, bool connecting, Code aborted) {
  const StreamKey key{&link, id};
  // A session never reuses a stream id, and a finished splice leaves the
  // table at once: a second splice for one stream is a bug in the caller.
  CT_CHECK(splices_.count(key) == 0);
  auto s = std::make_unique<Splice>(loop_, *this, link, id, std::move(fd), connecting, aborted);
  Splice* raw = s.get();
  splices_.emplace(key, std::move(s));
  return raw;
}

Splice* SpliceTable::find(const Link& link, uint32_t id) const {
  auto it = splices_.find(StreamKey{&link, id});
  return it == splices_.end() ? nullptr : it->second.get();
}

size_t SpliceTable::streams_on(const Link& link) const {
  size_t n = 0;
  for (auto it = splices_.lower_bound(StreamKey{&link, 0});
       it != splices_.end() && it->first.link == &link; ++it)
    n++;
  return n;
}

void SpliceTable::dispatch(Link& link, const Event& ev) noexcept {
  Splice* s = find(link, ev.stream);
  if (s == nullptr) return;
  switch (ev.kind) {
    case Event::kData:
      return s->on_data(ev.data);
    case Event::kFin:
      return s->on_fin();
    case Event::kReset:
      return s->on_reset(ev.code);
    case Event::kWritable:
      return s->on_writable();
    default:
      return;
  }
}

void SpliceTable::abort_all(Link& link) noexcept {
  // abort() ends in on_splice_done, which erases from splices_: walk a copy.
  std::vector<Splice*> all;
  for (auto it = splices_.lower_bound(StreamKey{&link, 0});
       it != splices_.end() && it->first.link == &link; ++it)
    all.push_back(it->second.get());
  for (Splice* s : all) s->abort();
}

void SpliceTable::flush() noexcept {
  // Splices stay alive until the loop's graveyard is cleared after this batch.
  std::vector<Splice*> batch;
  batch.swap(dirty_);
  for (Splice* s : batch) s->flush();
}

void SpliceTable::on_splice_done(Splice& s) noexcept {
  auto it = splices_.find(StreamKey{&s.link(), s.id()});
  if (it == splices_.end() || it->second.get() != &s) return;
  loop_.retire(std::move(it->second));
  splices_.erase(it);
}

}  // namespace ct
