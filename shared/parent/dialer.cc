#include "shared/parent/dialer.h"

#include <cstring>

#include "shared/base/log.h"

namespace ct {

void Dialer::start(const HostPort& to, Done done) {
  CT_CHECK(!busy());
  to_ = to;
  done_ = std::move(done);
  deadline_ = Clock::now() + kDialTimeout;
  if (auto addr = numeric_addr(to)) return connect_to(*addr);
  resolver_.start(to, [this](Result<SockAddr> addr) {
    if (!addr) return finish(addr.error());
    connect_to(*addr);
  });
}

void Dialer::connect_to(const SockAddr& addr) noexcept {
  bool in_progress = false;
  target_ = addr.str();
  LOG_DEBUG("dialling %s", target_.c_str());
  auto fd = connect_tcp(addr, &in_progress);
  if (!fd) return finish(fail("connect to " + target_ + ": " + fd.what()));
  fd_ = std::move(fd).value();
  loop_.add(fd_.get(), EPOLLOUT, this);
}

void Dialer::on_io(uint32_t) noexcept {
  loop_.del(fd_.get());
  UniqueFd fd = std::move(fd_);
  const int e = socket_error(fd.get());
  if (e != 0) return finish(fail("connect to " + target_ + ": " + std::strerror(e)));
  LOG_DEBUG("connected to %s", target_.c_str());
  finish(std::move(fd));
}

void Dialer::abandon() noexcept {
  resolver_.cancel();
  if (fd_) loop_.del(fd_.get());
  fd_.reset();
  deadline_ = TimePoint::max();
  done_ = nullptr;
}

void Dialer::finish(Result<UniqueFd> r) noexcept {
  Done done = std::move(done_);
  abandon();
  if (done) done(std::move(r));
}

TimePoint Dialer::tick(TimePoint now) noexcept {
  if (now < deadline_) return deadline_;
  if (resolver_.busy())
    finish(fail("cannot resolve " + to_.host + ": no answer within " +
                std::to_string(std::chrono::seconds(kDialTimeout).count()) + " s"));
  else if (fd_)
    finish(fail("connect to " + target_ + ": timed out"));
  return deadline_;
}

void send_dial_result(IpcChannel* ch, const Result<UniqueFd>& fd) {
  if (ch == nullptr) return;
  if (fd)
    ch->send(Msg::kDialed, {}, fd->get());
  else
    ch->send(Msg::kDialFailed, fd.what());
}

}  // namespace ct
