#include "shared/tls/link.h"

#include <sys/socket.h>

#include "shared/base/log.h"
#include "shared/os/net.h"
#include "shared/wire/limits.h"
#include "shared/wire/pin_rollover.h"

namespace ct {

BeaconLeg beacon_leg(std::shared_ptr<const TlsContext> ctx, const std::string& addr,
                     const rdv::Preamble& p, Duration answer_timeout) {
  const std::string host = addr.substr(0, addr.rfind(':'));
  const std::string bare =
      host.size() > 1 && host.front() == '[' ? host.substr(1, host.size() - 2) : host;
  BeaconLeg leg;
  leg.context = std::move(ctx);
  leg.verify_name = bare;
  leg.sni = is_ip_literal(bare) ? "" : bare;
  leg.preamble = rdv::encode_preamble(p);
  leg.answer_timeout = answer_timeout;
  leg.beacon = addr;
  return leg;
}

TlsLink::TlsLink(Loop& loop, Owner& owner, uint64_t id, UniqueFd fd, TlsLinkOptions opt,
                 TimePoint now)
    : Link(loop, owner, id),
      context_(std::move(opt.context)),
      beacon_(std::move(opt.beacon)),
      cfg_(std::move(opt.session)),
      handshake_deadline_(now + limits::kHandshakeTimeout) {
  if (beacon_) {
    // The beacon's handshake runs under the same deadline as a link's; the
    // link's own gets a fresh one when the beacon pairs it.
    beacon_context_ = std::move(beacon_->context);
    outer_ = std::make_unique<TlsConn>(beacon_context_->get(), std::move(fd), false, beacon_->sni);
    if (!outer_->verify_peer_name(beacon_->verify_name))
      LOG_LINK(LOG_WARN, id_, "beacon %s: cannot check its name %s", beacon_->beacon.c_str(),
               beacon_->verify_name.c_str());
    tls_ = std::make_unique<TlsConn>(context_->get(), *outer_, opt.server, opt.sni);
    phase_ = Phase::kBeaconHandshake;
  } else {
    tls_ = std::make_unique<TlsConn>(context_->get(), std::move(fd), opt.server, opt.sni);
  }
  // The client speaks first, but not from here: its first pump may end the
  // link (a peer that already reset, as a balancer with no backend does), and
  // the owner must hear of that only once it holds the link (it inserts it
  // in its table after this returns). EPOLLOUT on a fresh socket is ready at
  // once: the loop runs the first flight, and update_interest drops it.
  const bool speaks_first = !opt.server || beacon_;
  want_out_ = speaks_first;
  loop_.add(tls_->fd(), EPOLLIN | EPOLLRDHUP | (speaks_first ? EPOLLOUT : 0u), this);
  registered_ = true;
  arm_if_earlier();  // the handshake deadline
}

TlsLink::~TlsLink() = default;

void TlsLink::close_transport() noexcept {
  if (registered_) {
    loop_.del(tls_->fd());
    registered_ = false;
  }
  ::shutdown(tls_->fd(), SHUT_RDWR);
}

void TlsLink::on_io(uint32_t events) noexcept {
  if (closed_) return;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) tls_->allow_read(limits::kReadChunk);
  pump();
  tls_->allow_read(0);
}

bool TlsLink::pump_beacon() noexcept {
  const std::string& beacon = beacon_->beacon;
  if (phase_ == Phase::kBeaconHandshake) {
    if (!outer_->handshake()) {
      outer_->flush();  // the alert, if any
      if (outer_->failed() || outer_->eof()) {
        close("beacon " + beacon + ": " +
              (outer_->failed() ? outer_->error()
                                : "closed the connection during the TLS handshake"));
        return false;
      }
      update_interest();
      return false;
    }
    LOG_LINK(LOG_DEBUG, id_, "beacon %s: TLS established, preamble sent", beacon.c_str());
    if (!outer_->write_plain(beacon_->preamble)) {
      close("beacon " + beacon + ": " + outer_->error());
      return false;
    }
    phase_ = Phase::kBeaconWait;
    answer_deadline_ = Clock::now() + beacon_->answer_timeout;
    arm_if_earlier();
  }
  // Answers, read exactly: what follows PAIRED is the other side's first
  // bytes, which stay in the outer session for the link's handshake.
  uint8_t buf[rdv::kAnswerFixed + rdv::kMaxReason];
  while (phase_ == Phase::kBeaconWait) {
    const size_t want = answer_.wanted();
    const size_t n = outer_->read_plain(std::span<uint8_t>(buf, want));
    if (n == 0) break;
    if (answer_.feed(Bytes(buf, n)) == rdv::AnswerReader::State::kBad) {
      close("beacon " + beacon + ": " + answer_.error());
      return false;
    }
    if (answer_.state() != rdv::AnswerReader::State::kDone) continue;
    switch (answer_.answer()) {
      case rdv::Answer::kKeepalive:
        answer_deadline_ = Clock::now() + beacon_->answer_timeout;
        answer_.next();
        break;
      case rdv::Answer::kPaired:
        phase_ = Phase::kLink;
        answer_deadline_ = TimePoint::max();
        handshake_deadline_ = Clock::now() + limits::kHandshakeTimeout;
        LOG_LINK(LOG_DEBUG, id_, "beacon %s: paired", beacon.c_str());
        owner_.on_link_paired(*this);
        return !closed_;
      default:
        close("beacon " + beacon +
              " refused the connection: " + rdv::answer_name(answer_.answer()) +
              (answer_.reason().empty() ? "" : ": " + answer_.reason()));
        return false;
    }
  }
  if (outer_->failed() || outer_->eof()) {
    close("beacon " + beacon + ": " +
          (outer_->failed() ? outer_->error() : "closed the connection before pairing it"));
    return false;
  }
  if (!outer_->flush()) {
    close("beacon " + beacon + ": " + outer_->error());
    return false;
  }
  update_interest();
  return false;
}

void TlsLink::pump() noexcept {
  if (closed_) return;
  if (phase_ != Phase::kLink && !pump_beacon()) return;
  if (!tls_->established()) {
    if (!tls_->handshake()) {
      tls_->flush();  // the alert, if any
      if (tls_->failed() || tls_->eof()) {
        close(tls_->failed() ? tls_->error() : "peer closed the connection during the handshake");
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
    const size_t n = tls_->read_plain(space);
    session_->commit_input(n, Clock::now());
    if (n > 0) after_input();
    if (closed_) return;
    if (n < space.size()) break;  // nothing more now (read_plain's contract)
  }
  if (tls_->failed() || tls_->eof()) {
    // A TCP FIN without close_notify is a truncation, never a clean end (T-14).
    session_->transport_closed(tls_->closed_cleanly());
    after_input();
    if (!closed_) close(tls_->failed() ? tls_->error() : "peer closed the connection");
    return;
  }
  flush();
}

void TlsLink::flush() noexcept {
  if (closed_ || !tls_->established() || !session_) {
    if (!closed_) tls_->flush();
    return;
  }
  // Watermark: stop encrypting while the socket is not taking ciphertext; the
  // session then stops granting send capacity to the streams.
  while (session_->has_output() && tls_->pending_cipher() < limits::kOutputHighWater) {
    Bytes out = session_->output();
    const size_t n = std::min<size_t>(out.size(), limits::kOutputHighWater);
    if (!tls_->write_plain(out.first(n))) break;
    session_->output_written(n);
  }
  if (!tls_->flush() || tls_->failed()) {
    close(tls_->error());
    return;
  }
  update_interest();
  if (!session_->events().empty()) owner_.on_link_events(*this);
}

void TlsLink::update_interest() noexcept {
  if (!registered_) return;
  const bool want = tls_->pending_cipher() > 0;
  if (want != want_out_) {
    want_out_ = want;
    loop_.mod(tls_->fd(), EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u), this);
  }
}

void TlsLink::tick(TimePoint now) noexcept {
  if (closed_) return;
  if (phase_ == Phase::kBeaconWait) {
    if (now >= answer_deadline_)
      close("beacon " + beacon_->beacon + ": no answer within the deadline");
    return;
  }
  if (!tls_->established()) {
    if (now >= handshake_deadline_) close("TLS handshake not completed within the deadline");
    return;
  }
  Link::tick(now);
}

TimePoint TlsLink::next_deadline() const {
  if (closed_) return TimePoint::max();
  if (phase_ == Phase::kBeaconWait) return answer_deadline_;
  if (!tls_->established()) return handshake_deadline_;
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

std::string key_rollover_refusal(const std::map<uint64_t, std::unique_ptr<TlsLink>>& links,
                                 const CertState& current, const CertState& next,
                                 const char* peer) {
  const std::optional<Pin> pin = leaf_pin(next);
  if (!pin) return "";
  std::vector<PeerPinView> peers;
  for (const auto& [id, l] : links)
    if (!l->closed() && l->has_session() && l->session().ready())
      peers.push_back({id, l->session().version(), &l->session().peer_pins()});
  RolloverVerdict v = check_key_rollover(leaf_pin(current), *pin, peers, peer);
  for (uint64_t id : v.unchecked)
    LOG_LINK(LOG_WARN, id,
             "new key %s: the %s speaks protocol %u, too old to say what it pins; not checked",
             format_pin(*pin).c_str(), peer, links.at(id)->session().version());
  return v.refusal;
}

}  // namespace ct
