#include "shared/tls/link.h"

#include <sys/socket.h>

#include "shared/base/log.h"
#include "shared/wire/limits.h"

namespace ct {

TlsLink::TlsLink(Loop& loop, Owner& owner, uint64_t id, UniqueFd fd, TlsLinkOptions opt,
                 TimePoint now)
    : Link(loop, owner, id),
      context_(std::move(opt.context)),
      tls_(context_->get(), std::move(fd), opt.server, opt.sni),
      cfg_(std::move(opt.session)),
      handshake_deadline_(now + limits::kHandshakeTimeout) {
  loop_.add(tls_.fd(), EPOLLIN | EPOLLRDHUP, this);
  registered_ = true;
  arm_if_earlier();         // the handshake deadline
  if (!opt.server) pump();  // the client speaks first
}

TlsLink::~TlsLink() = default;

void TlsLink::close_transport() noexcept {
  if (registered_) {
    loop_.del(tls_.fd());
    registered_ = false;
  }
  ::shutdown(tls_.fd(), SHUT_RDWR);
}

void TlsLink::on_io(uint32_t events) noexcept {
  if (closed_) return;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) tls_.allow_read(limits::kReadChunk);
  pump();
  tls_.allow_read(0);
}

void TlsLink::pump() noexcept {
  if (closed_) return;
  if (!tls_.established()) {
    if (!tls_.handshake()) {
      tls_.flush();  // the alert, if any
      if (tls_.failed() || tls_.eof()) {
        close(tls_.failed() ? tls_.error() : "peer closed the connection during the handshake");
        return;
      }
      update_interest();
      return;
    }
    start_session(cfg_, Clock::now());
    LOG_LINK(LOG_DEBUG, id_, "TLS established");
  }
  // Decrypt whatever arrived, frame by frame into the session.
  for (;;) {
    auto space = session_->input_space(64 * 1024);
    const size_t n = tls_.read_plain(space);
    session_->commit_input(n, Clock::now());
    if (n > 0) after_input();
    if (closed_) return;
    if (n == 0) break;
  }
  if (tls_.failed() || tls_.eof()) {
    // A TCP FIN without close_notify is a truncation, never a clean end (T-14).
    session_->transport_closed(tls_.closed_cleanly());
    after_input();
    if (!closed_) close(tls_.failed() ? tls_.error() : "peer closed the connection");
    return;
  }
  flush();
}

void TlsLink::flush() noexcept {
  if (closed_ || !tls_.established() || !session_) {
    if (!closed_) tls_.flush();
    return;
  }
  // Watermark: stop encrypting while the socket is not taking ciphertext; the
  // session then stops granting send capacity to the streams.
  while (session_->has_output() && tls_.pending_cipher() < limits::kOutputHighWater) {
    Bytes out = session_->output();
    const size_t n = std::min<size_t>(out.size(), limits::kOutputHighWater);
    if (!tls_.write_plain(out.first(n))) break;
    session_->output_written(n);
  }
  if (!tls_.flush() || tls_.failed()) {
    close(tls_.error());
    return;
  }
  update_interest();
  if (!session_->events().empty()) owner_.on_link_events(*this);
}

void TlsLink::update_interest() noexcept {
  if (!registered_) return;
  const bool want = tls_.pending_cipher() > 0;
  if (want != want_out_) {
    want_out_ = want;
    loop_.mod(tls_.fd(), EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u), this);
  }
}

void TlsLink::tick(TimePoint now) noexcept {
  if (closed_) return;
  if (!tls_.established()) {
    if (now >= handshake_deadline_) close("TLS handshake not completed within the deadline");
    return;
  }
  Link::tick(now);
}

TimePoint TlsLink::next_deadline() const {
  if (closed_) return TimePoint::max();
  if (!tls_.established()) return handshake_deadline_;
  return Link::next_deadline();
}

void close_links_not_admitted(std::map<uint64_t, std::unique_ptr<TlsLink>>& links,
                              const TlsContext& ctx, const char* peer) {
  std::vector<TlsLink*> gone, unverified;
  for (auto& [id, l] : links) {
    if (l->closed()) continue;
    if (!l->established()) {
      unverified.push_back(l.get());
      continue;
    }
    const auto trusted = ctx.peer_trusted(l->ssl());
    if (trusted) continue;
    LOG_LINK(LOG_WARN, id, "%s no longer admitted by the reloaded material: %s", peer,
             trusted.what().c_str());
    if (l->has_session()) l->session().go_away(Code::kRefused);
    l->flush();
    l->shutdown_tls();
    gone.push_back(l.get());
  }
  const std::string reason = std::string(peer) + " no longer admitted after a reload";
  for (TlsLink* l : gone) l->close(reason);
  for (TlsLink* l : unverified) l->close("handshake begun before a reload");
}

}  // namespace ct
