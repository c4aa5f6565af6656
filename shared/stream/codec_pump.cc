#include "shared/stream/codec_pump.h"

#include <algorithm>

#include "shared/stream/unsent.h"

namespace ct {

void RelayDir::append(Bytes data) {
  append_unsent(buf, pos, data);
}

// Everything was sent on. The allocation is kept for the next burst: a
// stream keeps the credit it earned (session.h CreditPool), so what it may
// buffer again is already counted in the budget, and the buffer holds at most
// a quarter more than that (append). Giving it back at every drain cost 12%
// more CPU per GiB in `make bench-bulk` (each burst grew it again in steps).
void RelayDir::drained() {
  buf.clear();
  pos = 0;
}

namespace {
// The codec's outer bytes (handshake, records, alerts) to stream `a` of `sa`,
// as far as `a` has credit. True if any went.
bool send_outer(StreamCodec& c, Session& sa, uint32_t a) {
  bool sent = false;
  while (!c.outer_pending().empty()) {
    const size_t cap = sa.send_capacity(a);
    if (cap == 0) break;
    const Bytes out = c.outer_pending();
    const size_t n = std::min(cap, out.size());
    sa.send(a, out.first(n), false);
    c.outer_sent(n);
    sent = true;
  }
  return sent;
}
}  // namespace

bool CodecPump::run_outer(StreamCodec& c, Session& sa, uint32_t a) {
  for (int round = 0; round < 64 && !c.failed(); round++) {
    // Advances the handshake on what arrived, takes no inner byte.
    if (!c.established()) c.take_inner(std::span<uint8_t>());
    const bool progress = send_outer(c, sa, a);
    const uint64_t done = c.outer_consumed();
    if (done > outer_credited_) {
      sa.consume(a, static_cast<size_t>(done - outer_credited_));
      outer_credited_ = done;
    }
    if (!progress) break;
  }
  return !c.failed();
}

bool CodecPump::run(StreamCodec& c, Session& sa, uint32_t a, Session& sb, uint32_t b) {
  // Outer bytes buffered at most this far ahead of the link's window: beyond
  // it we stop encoding inner data (and stop crediting `b`).
  constexpr size_t kOuterHigh = 64 * 1024;
  uint8_t buf[16 * 1024];
  for (int round = 0; round < 64; round++) {
    bool progress = false;
    // 1. Outer bytes (handshake, records, alerts) to `a`.
    if (send_outer(c, sa, a)) progress = true;
    // 2. Inner bytes to `b`, as far as `b` has credit.
    while (sb.stream_exists(b) && !inner_fin_sent_) {
      const size_t cap = sb.send_capacity(b);
      if (cap == 0) break;
      const size_t n = c.take_inner(std::span<uint8_t>(buf, std::min(cap, sizeof buf)));
      if (n == 0) break;
      sb.send(b, Bytes(buf, n), false);
      inner_sent_ += n;
      progress = true;
    }
    if (c.failed()) break;
    // 3. Credit `a` for the outer bytes the codec has processed.
    const uint64_t done = c.outer_consumed();
    if (done > outer_credited_) {
      sa.consume(a, static_cast<size_t>(done - outer_credited_));
      outer_credited_ = done;
    }
    // 4. Inner bytes from `b` into the codec while its output is drained.
    RelayDir& d = from_inner_;
    if (d.pos < d.buf.size() && c.outer_pending().size() < kOuterHigh) {
      const Bytes in = Bytes(d.buf).subspan(d.pos);
      if (c.put_inner(in)) {
        sb.consume(b, in.size());
        d.buf.clear();
        d.pos = 0;
        progress = true;
      }
    }
    // Reading may have produced outer bytes (handshake replies): another round sends them.
    if (!c.outer_pending().empty() && sa.send_capacity(a) > 0) progress = true;
    if (!progress) break;
  }
  if (c.failed()) return false;
  // Half-closes. The wrapper's close_notify or FIN ends the inner stream once
  // everything before it was delivered; OpenBao's FIN becomes close_notify and
  // then FIN once those records left.
  if (!inner_fin_sent_ && (c.inner_eof() || outer_fin_) && c.outer_drained() &&
      sb.stream_exists(b)) {
    inner_fin_sent_ = true;
    sb.close_write(b);
  }
  RelayDir& d = from_inner_;
  if (d.fin && d.pos == d.buf.size() && !outer_closing_) {
    outer_closing_ = true;
    c.close_inner();
    return run(c, sa, a, sb, b);  // once: outer_closing_ is set
  }
  if (outer_closing_ && c.outer_pending().empty() && !d.fin_sent && sa.stream_exists(a)) {
    d.fin_sent = true;
    sa.close_write(a);
  }
  return true;
}

}  // namespace ct
