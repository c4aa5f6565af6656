#include "shared/stream/relay.h"

#include <algorithm>

#include "shared/base/check.h"
#include "shared/base/log.h"
#include "shared/wire/origin.h"

namespace ct {

namespace {
// " uid=..." for a relay's log lines: the stream's id from its origin.
std::string uid_note(const Relay& r) {
  if (r.origin.empty()) return {};
  auto o = decode_origin(r.origin, nullptr);
  return o && o->stream_id != 0 ? " uid=" + stream_uid_hex(o->stream_id) : std::string();
}
}  // namespace

Relay* RelayTable::create(Link* a, uint32_t id_a) {
  const StreamKey key{a, id_a};
  // A session never reuses a stream id, and a relay leaves ends_ when its
  // stream ends: a second relay for one stream is a bug in the caller.
  CT_CHECK(ends_.count(key) == 0);
  auto r = std::make_unique<Relay>();
  r->a = {a, id_a};
  Relay* raw = r.get();
  ends_.emplace(key, raw);
  relays_.emplace(key, std::move(r));
  return raw;
}

void RelayTable::attach(Relay* r, Link* b, uint32_t id_b) {
  CT_CHECK(r->b.link == nullptr);
  CT_CHECK(ends_.emplace(StreamKey{b, id_b}, r).second);
  r->b = {b, id_b};
  // Whatever the first side sent while we waited goes out now.
  pump(r, r->a, r->b, r->ab);
}

Relay* RelayTable::find(const Link* l, uint32_t id) const {
  auto it = ends_.find(StreamKey{l, id});
  return it == ends_.end() ? nullptr : it->second;
}

size_t RelayTable::streams_on(const Link& l) const {
  size_t n = 0;
  for (auto it = ends_.lower_bound(StreamKey{&l, 0}); it != ends_.end() && it->first.link == &l;
       ++it)
    n++;
  return n;
}

void RelayTable::pump(Relay* r, Relay::End& src, Relay::End& dst, RelayDir& d) {
  if (dst.link == nullptr || dst.link->closed()) return;
  Session& out = dst.link->session();
  while (d.pos < d.buf.size()) {
    const size_t cap = out.send_capacity(dst.id);
    if (cap == 0) return;  // kWritable on dst resumes us
    const size_t n = std::min(cap, d.buf.size() - d.pos);
    out.send(dst.id, Bytes(d.buf).subspan(d.pos, n), false);
    d.pos += n;
    if (src.link != nullptr && !src.link->closed()) src.link->session().consume(src.id, n);
  }
  d.drained();
  if (d.fin && !d.fin_sent) {
    d.fin_sent = true;
    out.close_write(dst.id);
    maybe_done(r);
  }
}

void RelayTable::dispatch(Link& l, const Event& ev) noexcept {
  switch (ev.kind) {
    case Event::kData:
      return on_data(&l, ev.stream, ev.data);
    case Event::kFin:
      return on_fin(&l, ev.stream);
    case Event::kReset:
      return on_reset(&l, ev.stream, ev.code);
    case Event::kWritable:
      return on_writable(&l, ev.stream);
    default:
      return;
  }
}

void RelayTable::on_data(Link* from, uint32_t id, Bytes data) {
  Relay* r = find(from, id);
  if (r == nullptr) return;
  if (idle_timeout_ > Duration::zero()) r->last_active = Clock::now();
  if (r->answering) {
    // The rest of the request goes nowhere: credit it so the wrapper is not
    // stalled before it reads the answer.
    from->session().consume(id, data.size());
    return;
  }
  if (r->codec && from == r->b.link && id == r->b.id) r->inner_seen = true;
  if (r->codec) {
    if (r->a.link == from && r->a.id == id) {
      r->codec->put_outer(data);  // credited on `a` as the codec processes it
    } else {
      r->pump.inner_data(data);  // credited when encoded
    }
    pump_codec(r);
    return;
  }
  const bool from_a = (r->a.link == from && r->a.id == id);
  Relay::End& src = from_a ? r->a : r->b;
  Relay::End& dst = from_a ? r->b : r->a;
  RelayDir& d = from_a ? r->ab : r->ba;
  if (d.pos == d.buf.size() && dst.link != nullptr && !dst.link->closed()) {
    // Fast path: straight through without a copy into our buffer.
    Session& out = dst.link->session();
    const size_t n = std::min(out.send_capacity(dst.id), data.size());
    if (n > 0) {
      out.send(dst.id, data.first(n), false);
      src.link->session().consume(src.id, n);
      data = data.subspan(n);
    }
  }
  d.append(data);
}

void RelayTable::on_fin(Link* from, uint32_t id) {
  Relay* r = find(from, id);
  if (r == nullptr) return;
  if (idle_timeout_ > Duration::zero()) r->last_active = Clock::now();
  if (r->answering) {
    // The wrapper is done; once our answer and FIN are out, so are we.
    r->pump.outer_fin();
    if (r->answer_fin_sent) remove(r);
    return;
  }
  const bool from_a = (r->a.link == from && r->a.id == id);
  if (r->codec && !from_a && r->codec->established() && !r->inner_seen &&
      r->pump.inner_bytes_sent() > 0) {
    // OpenBao read the request and closed without a byte of answer. Passed
    // on, that is a clean TLS end with nothing in it, which a client may
    // take for the server's answer; a 502 is what it can act on (FI-49).
    from->session().reset(id, Code::kCancel);
    return answer_unreachable(r, "vault-bridge: OpenBao closed the connection without answering");
  }
  if (r->codec) {
    if (from_a)
      r->pump.outer_fin();
    else
      r->pump.inner_fin();
    pump_codec(r);
    return;
  }
  RelayDir& d = from_a ? r->ab : r->ba;
  d.fin = true;
  if (from_a)
    pump(r, r->a, r->b, d);
  else
    pump(r, r->b, r->a, d);
}

void RelayTable::on_writable(Link* to, uint32_t id) {
  Relay* r = find(to, id);
  if (r == nullptr) return;
  if (r->answering) return pump_answer(r);
  if (r->codec) {
    pump_codec(r);
    return;
  }
  const bool to_b = (r->b.link == to && r->b.id == id);
  if (to_b)
    pump(r, r->a, r->b, r->ab);
  else
    pump(r, r->b, r->a, r->ba);
}

void RelayTable::pump_codec(Relay* r) {
  if (r->inner_pending && !open_pending_inner(r)) return;
  Relay::End& a = r->a;
  Relay::End& b = r->b;
  if (a.link == nullptr || b.link == nullptr || a.link->closed() || b.link->closed()) return;
  StreamCodec& c = *r->codec;
  if (!r->pump.run(c, a.link->session(), a.id, b.link->session(), b.id)) {
    if (c.established())
      codec_failed(r, &codec_failures_.record, "record", c.error());
    else
      codec_failed(r, &codec_failures_.handshake, "handshake", c.error());
    return;
  }
  if (r->pump.done()) remove(r);
}

bool RelayTable::open_pending_inner(Relay* r) {
  Relay::End& a = r->a;
  if (a.link == nullptr || a.link->closed()) return false;
  StreamCodec& c = *r->codec;
  if (!r->pump.run_outer(c, a.link->session(), a.id)) {
    codec_failed(r, &codec_failures_.handshake, "handshake", c.error());
    return false;
  }
  if (!c.established()) {
    if (r->pump.outer_fin_seen()) {
      // The wrapper left before its handshake was done: nothing was opened
      // inside, so nothing is dialled; our half ends too.
      Session& sa = a.link->session();
      if (sa.stream_exists(a.id)) sa.close_write(a.id);
      remove(r);
    }
    return false;
  }
  const Relay::End b = open_inner_ ? open_inner_(*r) : Relay::End{};
  if (b.link == nullptr) {
    reset(r, Code::kResource);
    return false;
  }
  r->inner_pending = false;
  CT_CHECK(ends_.emplace(StreamKey{b.link, b.id}, r).second);
  r->b = b;
  return true;
}

void RelayTable::on_reset(Link* from, uint32_t id, Code code) {
  Relay* r = find(from, id);
  if (r == nullptr) return;
  if (r->codec && r->codec->established() && !r->answering && !r->inner_seen && from == r->b.link &&
      id == r->b.id && (code == Code::kUpstreamRefused || code == Code::kResource)) {
    return answer_unreachable(r, code == Code::kResource
                                     ? "vault-bridge: out of resources for a connection to OpenBao"
                                     : "vault-bridge: OpenBao cannot be reached from the bridge");
  }
  // The stream is already gone from `from`'s session; reset only the other end.
  Relay::End& other = (r->a.link == from && r->a.id == id) ? r->b : r->a;
  if (other.link != nullptr && !other.link->closed()) other.link->session().reset(other.id, code);
  remove(r);
}

void RelayTable::reset(Relay* r, Code code) {
  for (Relay::End* e : {&r->a, &r->b})
    if (e->link != nullptr && !e->link->closed()) e->link->session().reset(e->id, code);
  remove(r);
}

void RelayTable::link_closed(Link* l, Code code) {
  std::vector<Relay*> gone;
  for (auto it = ends_.lower_bound(StreamKey{l, 0}); it != ends_.end() && it->first.link == l; ++it)
    gone.push_back(it->second);
  // A relay with both ends on `l` is listed twice: remove it once.
  std::sort(gone.begin(), gone.end());
  gone.erase(std::unique(gone.begin(), gone.end()), gone.end());
  for (Relay* r : gone) {
    Relay::End& other = (r->a.link == l) ? r->b : r->a;
    if (other.link != nullptr && other.link != l && !other.link->closed())
      other.link->session().reset(other.id, code);
    remove(r);
  }
}

void RelayTable::maybe_done(Relay* r) {
  // Both directions delivered their FIN: both sessions have closed the stream.
  if (r->ab.fin_sent && r->ba.fin_sent) remove(r);
}

void RelayTable::codec_failed(Relay* r, uint64_t* counter, const char* what,
                              const std::string& why) {
  (*counter)++;
  LOG_WARN_THROTTLED(codec_log_,
                     "stream=%u%s wrapper TLS failed (%s): %s; since start: handshake %llu, "
                     "timeout %llu, record %llu",
                     r->a.id, uid_note(*r).c_str(), what, why.c_str(),
                     static_cast<unsigned long long>(codec_failures_.handshake),
                     static_cast<unsigned long long>(codec_failures_.timeout),
                     static_cast<unsigned long long>(codec_failures_.record));
  // The broker counts its resets by code: a client's bad TLS must not look
  // like a protocol violation on the link, nor a deadline like bad TLS.
  reset(r, counter == &codec_failures_.timeout ? Code::kTimeout : Code::kWrapperTls);
}

void RelayTable::answer_unreachable(Relay* r, const std::string& why) {
  // `b` is gone from its session already: forget it.
  ends_.erase(StreamKey{r->b.link, r->b.id});
  r->b = {};
  r->answering = true;
  const std::string body = "{\"errors\":[\"" + why + "\"]}\n";
  const std::string resp =
      "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  StreamCodec& c = *r->codec;
  c.put_inner(Bytes(reinterpret_cast<const uint8_t*>(resp.data()), resp.size()));
  c.close_inner();
  pump_answer(r);
}

void RelayTable::pump_answer(Relay* r) {
  if (r->a.link == nullptr || r->a.link->closed() || r->answer_fin_sent) return;
  Session& sa = r->a.link->session();
  StreamCodec& c = *r->codec;
  while (!c.outer_pending().empty()) {
    const size_t cap = sa.send_capacity(r->a.id);
    if (cap == 0) return;  // kWritable brings us back
    const Bytes out = c.outer_pending();
    const size_t n = std::min(cap, out.size());
    sa.send(r->a.id, out.first(n), false);
    c.outer_sent(n);
  }
  // Answer and close_notify sent: our half ends; the wrapper's FIN (or the
  // idle timeout) removes the relay.
  r->answer_fin_sent = true;
  sa.close_write(r->a.id);
  if (r->pump.outer_fin_seen()) remove(r);
}

void RelayTable::set_timer(Relay* r, TimePoint at) {
  if (r->timer_at != TimePoint::max()) timers_.erase({r->timer_at, r});
  r->timer_at = at;
  if (at != TimePoint::max()) timers_.insert({at, r});
}

void RelayTable::start_timers(Relay* r, TimePoint now) {
  r->last_active = now;
  TimePoint at = TimePoint::max();
  if (r->codec && handshake_timeout_ > Duration::zero()) {
    r->handshake_deadline = now + handshake_timeout_;
    at = r->handshake_deadline;
  }
  if (idle_timeout_ > Duration::zero()) at = std::min(at, now + idle_timeout_);
  set_timer(r, at);
}

void RelayTable::expire(TimePoint now) {
  // Each pass removes the first timer: bounded by the number of relays.
  while (!timers_.empty() && timers_.begin()->first <= now) {
    Relay* r = timers_.begin()->second;
    timers_.erase(timers_.begin());
    r->timer_at = TimePoint::max();
    const bool handshaking = r->codec && !r->codec->established();
    if (handshaking && now >= r->handshake_deadline) {
      codec_failed(r, &codec_failures_.timeout, "timeout",
                   "handshake not complete within the deadline");
      continue;
    }
    TimePoint next = TimePoint::max();
    if (idle_timeout_ > Duration::zero()) {
      if (now >= r->last_active + idle_timeout_) {
        idle_resets_++;
        LOG_WARN_THROTTLED(idle_log_,
                           "stream=%u%s no byte either way within the idle timeout: reset "
                           "(%llu since start)",
                           r->a.id, uid_note(*r).c_str(),
                           static_cast<unsigned long long>(idle_resets_));
        reset(r, Code::kTimeout);
        continue;
      }
      next = r->last_active + idle_timeout_;
    }
    if (handshaking) next = std::min(next, r->handshake_deadline);
    set_timer(r, next);
  }
}

void RelayTable::remove(Relay* r) {
  set_timer(r, TimePoint::max());
  const StreamKey key{r->a.link, r->a.id};
  ends_.erase(key);
  if (r->b.link != nullptr) ends_.erase(StreamKey{r->b.link, r->b.id});
  relays_.erase(key);  // last: it frees r
}

}  // namespace ct
