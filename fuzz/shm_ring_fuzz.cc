// The data channel's shared-memory ring (shared/ipc/shm_ring.h) against a
// hostile peer. The peer is the other process of the daemon: it maps the same
// file and may store anything anywhere in it at any time (its positions, its
// sleep flags, our published positions, the payload of either ring). The
// header's trust model says what we owe it: our positions are ours and never
// read back; the peer's positions are checked before use, and one that claims
// more bytes than the ring holds, or moves backwards, is corruption that ends
// the channel.
//
// The harness maps the file a second time as the peer and keeps a shadow copy
// of the whole file: what the peer stores goes to both, and what our side is
// allowed to change (the bytes it wrote into its outgoing ring, the positions
// and flags it publishes) is applied to the shadow from a model of the trust
// model, never from the real file. The input picks our side (either process)
// and then a list of actions: our write / read / wait_for_space /
// wait_for_data / take_*_sleeping, and the peer's moves (an honest position,
// any 64-bit value, a step backwards, a step past the ring; flags; payload and
// header scribbles; overwriting what we published).
//
// After every action:
//  - write() returns exactly what fits (never more than the ring's free room by
//    the last position we accepted), read() exactly what the peer's accepted
//    position makes available, and 0 once corrupt;
//  - the bytes read are the ring's bytes at our read position (the rings are
//    filled with a position-dependent pattern, so a read from a wrong offset or
//    from outside the incoming ring differs), and read() does not write past
//    the count it returns;
//  - corrupt() is set exactly when the peer's position broke the rules, and
//    stays set; the wait_* and take_* answers match the flags in the file.
// At the end the real file equals the shadow byte for byte: a write outside
// our outgoing ring (into the header, the other ring) or of other bytes is a
// finding. Accesses beyond the mapping itself are left to the sanitizers (the
// kernel places the mapping; we cannot put guard pages around it).
//
// The field layout below is private to shm_ring.cc; a honest run through two
// real ShmRings checks it once per process, so a layout change fails loudly
// instead of fuzzing the wrong offsets.
#include <sanitizer/asan_interface.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "shared/base/unique_fd.h"
#include "shared/ipc/shm_ring.h"

namespace ct::fuzz {
namespace {

// A ring of one page, not the daemons' 1 MiB (ShmRing::kRingBytes): the
// ring's code is the same for any power of two (positions are masked, the
// size is a parameter of create() and map()), and every run resets, copies
// and compares the whole file, and writes and reads up to two rings' worth:
// with 1 MiB rings that was 2-5 ms a run (memcpy and the page faults of a
// fresh mapping; perf), with a page it is microseconds. A small ring also
// wraps and fills within a few actions.
constexpr size_t kRing = 4096;
constexpr uint64_t kMask = kRing - 1;
constexpr size_t kFile = ShmRing::file_bytes(kRing);
// One direction's fields: direction k at 512 * k, each field on its own
// cache line (shm_ring.cc, struct ShmRing::Dir).
constexpr size_t kDirStride = 512;
constexpr size_t kTail = 0, kHead = 64, kReaderSleeping = 128, kWriterSleeping = 192;

uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
void store64(uint8_t* p, uint64_t v) {
  std::memcpy(p, &v, sizeof v);
}
uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
void store32(uint8_t* p, uint32_t v) {
  std::memcpy(p, &v, sizeof v);
}
// memcmp without its null-pointer rule for empty ranges (an empty vector's
// data() may be null).
bool same(const uint8_t* x, const uint8_t* y, size_t n) {
  return n == 0 || std::memcmp(x, y, n) == 0;
}

// The process-wide file, the peer's mapping of it, the shadow, and the
// patterns (built once: a run resets them by copying).
struct World {
  UniqueFd fd;
  uint8_t* peer = nullptr;
  // Our side's own mapping of the file, made once: each run attaches a fresh
  // ShmRing to it (ShmRing::attach) instead of map()ping the file again, since
  // the munmap at the end of a run was half of its time (TLB shootdown).
  // map() itself runs in check_layout().
  uint8_t* ours = nullptr;
  std::vector<uint8_t> shadow;
  std::vector<uint8_t> fresh;  // a fresh file: zero header, patterned rings
  std::vector<uint8_t> src;    // what our side writes: another pattern
  std::vector<uint8_t> fill;   // kFill bytes, as long as the longest read
  // Where reads land: kFill bytes except during a read. One buffer for every
  // read, not a fresh vector of the read's length (up to 2 MiB): that was
  // an mmap, page faults and a fill per read, half of the target's time.
  std::vector<uint8_t> readbuf;
};

constexpr uint8_t kFill = 0xa5;  // what a read's buffer holds before the read
constexpr size_t kGuard = 4096;  // poisoned bytes after a read's buffer

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed;
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    v[i] = static_cast<uint8_t>(x >> 23);
  }
  return v;
}

// An honest exchange through two real rings, read back through the peer's
// mapping at the offsets this file assumes.
void check_layout(World& w) {
  auto tls_map = ShmRing::map(w.fd.get(), ShmRing::Side::kTls, kRing);
  auto fwd_map = ShmRing::map(w.fd.get(), ShmRing::Side::kForward, kRing);
  FZ_CHECK(tls_map && fwd_map, "map: %s", (tls_map ? fwd_map : tls_map).what().c_str());
  std::unique_ptr<ShmRing> tls = std::move(*tls_map), fwd = std::move(*fwd_map);
  const uint8_t msg[3] = {7, 8, 9};
  FZ_CHECK(tls->write(Bytes(msg, 3)) == 3, "layout probe write");
  uint8_t got[2];
  FZ_CHECK(fwd->read(std::span<uint8_t>(got, 2)) == 2, "layout probe read");
  FZ_CHECK(fwd->write(Bytes(msg, 1)) == 1, "layout probe write back");
  FZ_CHECK(fwd->wait_for_space() == false, "layout probe wait");
  uint8_t rest[1];
  FZ_CHECK(fwd->read(std::span<uint8_t>(rest, 1)) == 1 && fwd->wait_for_data(), "layout probe");
  const uint8_t* d0 = w.peer;
  const uint8_t* d1 = w.peer + kDirStride;
  FZ_CHECK(load64(d0 + kTail) == 3 && load64(d0 + kHead) == 3 && load64(d1 + kTail) == 1 &&
               load32(d0 + kReaderSleeping) == 1 && load32(d1 + kWriterSleeping) == 0 &&
               w.peer[ShmRing::kHeaderBytes] == 7 && w.peer[ShmRing::kHeaderBytes + kRing] == 7,
           "this fuzzer's copy of the ring layout no longer matches shm_ring.cc");
}

World& world() {
  static World* w = [] {
    auto* n = new World;
    int err = 0;
    n->fd = ShmRing::create(&err, kRing);
    FZ_CHECK(n->fd, "memfd: %s", std::strerror(err));
    void* p = ::mmap(nullptr, kFile, PROT_READ | PROT_WRITE, MAP_SHARED, n->fd.get(), 0);
    FZ_CHECK(p != MAP_FAILED, "mmap: %s", std::strerror(errno));
    n->peer = static_cast<uint8_t*>(p);
    p = ::mmap(nullptr, kFile, PROT_READ | PROT_WRITE, MAP_SHARED, n->fd.get(), 0);
    FZ_CHECK(p != MAP_FAILED, "mmap: %s", std::strerror(errno));
    n->ours = static_cast<uint8_t*>(p);
    check_layout(*n);
    n->fresh.assign(kFile, 0);
    const auto rings = pattern(2 * kRing, 0x5eed);
    std::copy(rings.begin(), rings.end(), n->fresh.begin() + ShmRing::kHeaderBytes);
    n->src = pattern(2 * kRing + 4096, 0xfeed);
    n->shadow.resize(kFile);
    n->fill.assign(2 * kRing, kFill);
    n->readbuf.assign(2 * kRing, kFill);
    return n;
  }();
  return *w;
}

// Our side's view of the file and the model of what it may do.
struct Harness {
  World& w;
  std::unique_ptr<ShmRing> ring;
  size_t out_dir, in_dir, out_ring, in_ring;  // offsets into the file
  uint64_t tail = 0, head = 0;                // our positions
  uint64_t seen_head = 0, seen_tail = 0;      // the peer's last accepted positions
  bool corrupt = false;

  uint64_t get64(size_t off) const { return load64(w.shadow.data() + off); }
  uint32_t get32(size_t off) const { return load32(w.shadow.data() + off); }
  // The peer stores: into the real file and the shadow alike.
  void peer64(size_t off, uint64_t v) {
    store64(w.peer + off, v);
    store64(w.shadow.data() + off, v);
  }
  void peer32(size_t off, uint32_t v) {
    store32(w.peer + off, v);
    store32(w.shadow.data() + off, v);
  }
  void peer_bytes(size_t off, Bytes b) {
    if (b.empty()) return;
    std::memcpy(w.peer + off, b.data(), b.size());
    std::memcpy(w.shadow.data() + off, b.data(), b.size());
  }

  // The trust model's rule for the reader's head on our outgoing ring.
  bool accept_head(uint64_t v) {
    if (v < seen_head || v > tail || tail - v > kRing) return false;
    seen_head = v;
    return true;
  }
  // ...and for the writer's tail on our incoming ring.
  bool accept_tail(uint64_t v) {
    if (v < seen_tail || v < head || v - head > kRing) return false;
    seen_tail = v;
    return true;
  }

  size_t length(FuzzInput& in) {
    switch (in.u8() % 4) {
      case 0:
        return in.u8();
      case 1:  // within the ring
        return in.u16() % kRing;
      case 2:
        return kRing - 16 + in.u8() % 32;
      default:
        return in.u32() % (2 * kRing);
    }
  }

  void our_write(FuzzInput& in) {
    const size_t len = length(in);
    const size_t off = in.u16() % (w.src.size() - len + 1);
    const Bytes data(w.src.data() + off, len);
    const size_t n = ring->write(data);
    size_t want = 0;
    if (!corrupt) {
      if (!accept_head(get64(out_dir + kHead)))
        corrupt = true;
      else
        want = std::min(kRing - static_cast<size_t>(tail - seen_head), len);
    }
    FZ_CHECK(n == want, "write(%zu) gave %zu, the ring had room for %zu", len, n, want);
    // Where the bytes must land: our outgoing ring from our tail, wrapping.
    const size_t at = static_cast<size_t>(tail & kMask);
    const size_t first = std::min(n, kRing - at);
    std::memcpy(w.shadow.data() + out_ring + at, data.data(), first);
    std::memcpy(w.shadow.data() + out_ring, data.data() + first, n - first);
    tail += n;
    if (n > 0) store64(w.shadow.data() + out_dir + kTail, tail);
  }

  void our_read(FuzzInput& in) {
    const size_t len = length(in);
    // ASan sees an overrun as it did with a buffer of exactly len: the
    // allocation's redzone before it, and after it the next kGuard bytes
    // poisoned for the call (or the allocation's redzone at the end).
    uint8_t* const out = w.readbuf.data();
    const size_t guard = std::min(kGuard, w.readbuf.size() - len);
    ASAN_POISON_MEMORY_REGION(out + len, guard);
    const size_t n = ring->read(std::span<uint8_t>(out, len));
    ASAN_UNPOISON_MEMORY_REGION(out + len, guard);
    size_t want = 0;
    if (!corrupt) {
      if (!accept_tail(get64(in_dir + kTail)))
        corrupt = true;
      else
        want = std::min(static_cast<size_t>(seen_tail - head), len);
    }
    FZ_CHECK(n == want, "read(%zu) gave %zu, the peer made %zu available", len, n, want);
    // memcmp, not a loop: libFuzzer traces every comparison a loop makes,
    // and a megabyte of them per read is most of a run's time.
    const size_t at = static_cast<size_t>(head & kMask);
    const size_t first = std::min(n, kRing - at);
    FZ_CHECK(same(out, w.shadow.data() + in_ring + at, first) &&
                 same(out + first, w.shadow.data() + in_ring, n - first),
             "a read of %zu bytes at position %llu is not the ring's bytes there", n,
             static_cast<unsigned long long>(head));
    FZ_CHECK(same(out + n, w.fill.data(), len - n), "read() wrote beyond the %zu bytes it returned",
             n);
    std::memset(out, kFill, n);  // the rest is still kFill: checked above
    head += n;
    if (n > 0) store64(w.shadow.data() + in_dir + kHead, head);
  }

  void our_wait_for_space() {
    const bool got = ring->wait_for_space();
    store32(w.shadow.data() + out_dir + kWriterSleeping, 1);
    bool want = true;
    if (!corrupt) {
      if (!accept_head(get64(out_dir + kHead))) {
        corrupt = true;
      } else if (tail - seen_head < kRing) {
        store32(w.shadow.data() + out_dir + kWriterSleeping, 0);
        want = false;
      }
    }
    FZ_CHECK(got == want, "wait_for_space() said %d", got);
  }

  void our_wait_for_data() {
    const bool got = ring->wait_for_data();
    store32(w.shadow.data() + in_dir + kReaderSleeping, 1);
    bool want = true;
    if (!corrupt) {
      if (!accept_tail(get64(in_dir + kTail))) {
        corrupt = true;
      } else if (seen_tail != head) {
        store32(w.shadow.data() + in_dir + kReaderSleeping, 0);
        want = false;
      }
    }
    FZ_CHECK(got == want, "wait_for_data() said %d", got);
  }

  void our_take(size_t field) {
    const bool got = field == 0 ? ring->take_reader_sleeping() : ring->take_writer_sleeping();
    const size_t off = field == 0 ? out_dir + kReaderSleeping : in_dir + kWriterSleeping;
    FZ_CHECK(got == (get32(off) != 0), "take_*_sleeping() does not match the flag");
    store32(w.shadow.data() + off, 0);
  }

  // A position the peer publishes: honest, anything, backwards, or too far.
  uint64_t position(FuzzInput& in, uint64_t cur, uint64_t lo, uint64_t hi) {
    switch (in.u8() % 5) {
      case 0:
        return hi >= cur ? cur + in.u32() % (hi - cur + 1) : cur;
      case 1:
        return in.u64();
      case 2:
        return cur - 1 - in.u8();
      case 3:
        return hi + 1 + in.u8();
      default:
        return lo + in.u8();
    }
  }

  void step(FuzzInput& in) {
    switch (in.u8() % 13) {
      case 0:
      case 1:
        return our_write(in);
      case 2:
      case 3:
        return our_read(in);
      case 4:
        return our_wait_for_space();
      case 5:
        return our_wait_for_data();
      case 6:
        return our_take(in.u8() & 1);
      case 7:  // the peer reads our outgoing ring: its head
        return peer64(out_dir + kHead, position(in, get64(out_dir + kHead), seen_head, tail));
      case 8: {  // the peer writes our incoming ring: payload, then its tail
        const uint64_t cur = get64(in_dir + kTail);
        const uint64_t v = position(in, cur, seen_tail, head + kRing);
        // At most a ring of payload (more would only overwrite itself).
        const size_t k = std::min<uint64_t>({v - cur, in.u16(), kRing});
        const size_t at = static_cast<size_t>(cur & kMask);
        const size_t first = std::min(k, kRing - at);
        const size_t src = in.u16() % (w.src.size() - k + 1);
        peer_bytes(in_ring + at, Bytes(w.src.data() + src, first));
        peer_bytes(in_ring, Bytes(w.src.data() + src + first, k - first));
        return peer64(in_dir + kTail, v);
      }
      case 9: {  // any flag of either direction
        const size_t dir = (in.u8() & 1) ? out_dir : in_dir;
        const size_t field = (in.u8() & 1) ? kReaderSleeping : kWriterSleeping;
        return peer32(dir + field, in.u32());
      }
      case 10: {  // payload of either ring
        const size_t base = (in.u8() & 1) ? out_ring : in_ring;
        const size_t at = in.u32() & kMask;
        const Bytes b = in.bytes(std::min<size_t>(in.u8(), kRing - at));
        return peer_bytes(base + at, b);
      }
      case 11:  // what we published: we never read it back
        return peer64((in.u8() & 1) ? out_dir + kTail : in_dir + kHead, in.u64());
      default: {  // anywhere in the header
        const size_t at = in.u16() % ShmRing::kHeaderBytes;
        const uint8_t v = in.u8();
        return peer_bytes(at, Bytes(&v, 1));
      }
    }
  }
};

}  // namespace
}  // namespace ct::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ct;
  using namespace ct::fuzz;
  World& w = world();
  FuzzInput in(Bytes(data, size));
  // A fresh file, as the parent creates it, before our side maps it.
  std::memcpy(w.peer, w.fresh.data(), kFile);
  std::memcpy(w.shadow.data(), w.fresh.data(), kFile);
  const bool tls = (in.u8() & 1) == 0;
  Harness h{w,
            ShmRing::attach(w.ours, tls ? ShmRing::Side::kTls : ShmRing::Side::kForward, kRing),
            tls ? 0 : kDirStride,
            tls ? kDirStride : 0,
            ShmRing::kHeaderBytes + (tls ? 0 : kRing),
            ShmRing::kHeaderBytes + (tls ? kRing : 0)};
  for (int i = 0; i < 256 && !in.empty(); i++) {
    h.step(in);
    FZ_CHECK(h.ring->corrupt() == h.corrupt, "corrupt() is %d, the trust model says %d",
             h.ring->corrupt(), h.corrupt);
  }
  if (std::memcmp(w.shadow.data(), w.peer, kFile) != 0) {
    const auto diff = std::mismatch(w.shadow.begin(), w.shadow.end(), w.peer);
    FZ_CHECK(false, "byte %zu of the file is not what our side may write",
             static_cast<size_t>(diff.first - w.shadow.begin()));
  }
  return 0;
}
