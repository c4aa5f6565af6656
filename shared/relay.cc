#include "shared/relay.h"

#include "shared/check.h"

namespace ct {

Relay* RelayTable::create(Link* a, uint32_t id_a) {
  auto r = std::make_unique<Relay>();
  r->a = {a, id_a};
  Relay* raw = r.get();
  a->relays[id_a] = raw;
  relays_.emplace(raw, std::move(r));
  return raw;
}

void RelayTable::attach(Relay* r, Link* b, uint32_t id_b) {
  CT_CHECK(r->b.link == nullptr);
  r->b = {b, id_b};
  b->relays[id_b] = r;
  // Whatever the first side sent while we waited goes out now.
  pump(r, r->a, r->b, r->ab);
}

Relay* RelayTable::find(Link* l, uint32_t id) const {
  auto it = l->relays.find(id);
  return it == l->relays.end() ? nullptr : it->second;
}

std::vector<Relay*> RelayTable::pending() const {
  std::vector<Relay*> out;
  for (auto& [raw, r] : relays_)
    if (r->b.link == nullptr) out.push_back(raw);
  return out;
}

void RelayTable::pump(Relay* r, Relay::End& src, Relay::End& dst, Relay::Dir& d) {
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
  d.buf.clear();
  d.pos = 0;
  if (d.fin && !d.fin_sent) {
    d.fin_sent = true;
    out.close_write(dst.id);
    maybe_done(r);
  }
}

void RelayTable::on_data(Link* from, uint32_t id, Bytes data) {
  Relay* r = find(from, id);
  if (r == nullptr) return;
  const bool from_a = (r->a.link == from && r->a.id == id);
  Relay::End& src = from_a ? r->a : r->b;
  Relay::End& dst = from_a ? r->b : r->a;
  Relay::Dir& d = from_a ? r->ab : r->ba;
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
  d.buf.insert(d.buf.end(), data.begin(), data.end());
}

void RelayTable::on_fin(Link* from, uint32_t id) {
  Relay* r = find(from, id);
  if (r == nullptr) return;
  const bool from_a = (r->a.link == from && r->a.id == id);
  Relay::Dir& d = from_a ? r->ab : r->ba;
  d.fin = true;
  if (from_a)
    pump(r, r->a, r->b, d);
  else
    pump(r, r->b, r->a, d);
}

void RelayTable::on_writable(Link* to, uint32_t id) {
  Relay* r = find(to, id);
  if (r == nullptr) return;
  const bool to_b = (r->b.link == to && r->b.id == id);
  if (to_b)
    pump(r, r->a, r->b, r->ab);
  else
    pump(r, r->b, r->a, r->ba);
}

void RelayTable::on_reset(Link* from, uint32_t id, Code code) {
  Relay* r = find(from, id);
  if (r == nullptr) return;
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
  for (auto& [id, r] : l->relays) gone.push_back(r);
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

void RelayTable::remove(Relay* r) {
  if (r->a.link != nullptr) r->a.link->relays.erase(r->a.id);
  if (r->b.link != nullptr) r->b.link->relays.erase(r->b.id);
  relays_.erase(r);
}

}  // namespace ct
