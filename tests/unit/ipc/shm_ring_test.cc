// The data channel's shared-memory rings (shm_ring.h): bytes arrive intact
// and in order across the wrap, a full ring takes nothing, the sleep flags
// ask for exactly the wake-ups needed, the file cannot be resized by a child,
// and a peer that publishes an impossible position ends the channel instead
// of making us read or write outside what it may touch.
#include "shared/ipc/shm_ring.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace ct {
namespace {

constexpr size_t R = ShmRing::kRingBytes;

struct Pair {
  UniqueFd fd;
  std::unique_ptr<ShmRing> tls, fwd;
  Pair() {
    int err = 0;
    fd = ShmRing::create(&err);
    EXPECT_TRUE(fd.valid()) << std::strerror(err);
    auto tls_map = ShmRing::map(fd.get(), ShmRing::Side::kTls);
    auto fwd_map = ShmRing::map(fd.get(), ShmRing::Side::kForward);
    EXPECT_TRUE(tls_map && fwd_map) << (tls_map ? fwd_map : tls_map).what();
    if (tls_map) tls = std::move(*tls_map);
    if (fwd_map) fwd = std::move(*fwd_map);
  }
  // The shared header as a third party sees it: what a compromised peer can write.
  uint64_t* raw_u64(size_t offset) {
    if (raw == nullptr)
      raw = static_cast<uint8_t*>(
          mmap(nullptr, ShmRing::kHeaderBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0));
    return reinterpret_cast<uint64_t*>(raw + offset);
  }
  ~Pair() {
    if (raw != nullptr) munmap(raw, ShmRing::kHeaderBytes);
  }
  uint8_t* raw = nullptr;
};
// Header layout (shm_ring.cc): direction 0 (tls -> forward) at 0, direction 1
// at 512; in each, tail at +0 and head at +64.
constexpr size_t kTail0 = 0, kHead0 = 64;

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; i++) v[i] = static_cast<uint8_t>((i * 131 + seed) >> 3);
  return v;
}

TEST(ShmRing, BytesArriveIntactAndInOrderAcrossTheWrapBothWays) {
  Pair p;
  for (auto [w, r] : {std::pair{p.tls.get(), p.fwd.get()}, std::pair{p.fwd.get(), p.tls.get()}}) {
    const auto src = pattern(3 * R + 12345, 7);
    std::vector<uint8_t> dst;
    size_t sent = 0;
    std::vector<uint8_t> buf(70001);  // odd sizes: every piece straddles the wrap somewhere
    for (int round = 0; round < 10000 && dst.size() < src.size(); round++) {
      sent += w->write(Bytes(src).subspan(sent, std::min<size_t>(99991, src.size() - sent)));
      const size_t n = r->read(buf);
      dst.insert(dst.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
    EXPECT_EQ(dst, src);
    EXPECT_FALSE(w->corrupt() || r->corrupt());
  }
}

TEST(ShmRing, AFullRingTakesNothingAndTheReaderWakesTheWaitingWriter) {
  Pair p;
  const auto src = pattern(R + 100, 1);
  EXPECT_EQ(p.tls->write(src), R);
  EXPECT_EQ(p.tls->write(Bytes(src).subspan(R)), 0u);
  EXPECT_TRUE(p.tls->wait_for_space());  // full: it sleeps
  std::vector<uint8_t> buf(100);
  EXPECT_EQ(p.fwd->read(buf), 100u);
  EXPECT_TRUE(p.fwd->take_writer_sleeping());   // so it is woken
  EXPECT_FALSE(p.fwd->take_writer_sleeping());  // once
  EXPECT_FALSE(p.tls->wait_for_space());        // room now: write, don't sleep
  EXPECT_EQ(p.tls->write(Bytes(src).subspan(R)), 100u);
}

TEST(ShmRing, AnEmptyRingAsksForAWakeUpAndTheWriterGivesItOnce) {
  Pair p;
  EXPECT_FALSE(p.tls->take_reader_sleeping());  // nobody asked yet
  EXPECT_TRUE(p.fwd->wait_for_data());          // empty: it sleeps
  const uint8_t b[3] = {1, 2, 3};
  EXPECT_EQ(p.tls->write(b), 3u);
  EXPECT_TRUE(p.tls->take_reader_sleeping());
  EXPECT_FALSE(p.tls->take_reader_sleeping());
  EXPECT_FALSE(p.fwd->wait_for_data());  // bytes are there: read, don't sleep
  EXPECT_FALSE(p.tls->take_reader_sleeping());
}

TEST(ShmRing, TheFileIsSealedSoNoChildCanShrinkItUnderTheOther) {
  Pair p;
  EXPECT_NE(ftruncate(p.fd.get(), 4096), 0);
  EXPECT_EQ(errno, EPERM);
  const int seals = fcntl(p.fd.get(), F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_NE(fcntl(p.fd.get(), F_ADD_SEALS, F_SEAL_WRITE), 0);  // nor change the seals
}

TEST(ShmRing, AWritePositionBeyondTheRingEndsTheChannelWithoutReading) {
  Pair p;
  *p.raw_u64(kTail0) = R + 1;  // claims more bytes than the ring holds
  std::vector<uint8_t> buf(2 * R);
  EXPECT_EQ(p.fwd->read(buf), 0u);
  EXPECT_TRUE(p.fwd->corrupt());
  EXPECT_NE(p.fwd->corruption().find("write position"), std::string::npos);
}

TEST(ShmRing, AWritePositionThatGoesBackIsCorruption) {
  Pair p;
  const auto src = pattern(1000, 3);
  EXPECT_EQ(p.tls->write(src), 1000u);
  std::vector<uint8_t> buf(500);
  EXPECT_EQ(p.fwd->read(buf), 500u);
  *p.raw_u64(kTail0) = 400;  // behind what we already read
  EXPECT_EQ(p.fwd->read(buf), 0u);
  EXPECT_TRUE(p.fwd->corrupt());
}

TEST(ShmRing, AReadPositionAheadOfWhatWasWrittenIsCorruption) {
  Pair p;
  const auto src = pattern(1000, 4);
  EXPECT_EQ(p.tls->write(src), 1000u);
  *p.raw_u64(kHead0) = 5000;  // "read" bytes never written: would let us overwrite unread data
  EXPECT_EQ(p.tls->write(src), 0u);
  EXPECT_TRUE(p.tls->corrupt());
  EXPECT_NE(p.tls->corruption().find("read position"), std::string::npos);
}

TEST(ShmRing, AReadPositionThatGoesBackIsCorruption) {
  Pair p;
  const auto src = pattern(1000, 5);
  EXPECT_EQ(p.tls->write(src), 1000u);
  std::vector<uint8_t> buf(800);
  EXPECT_EQ(p.fwd->read(buf), 800u);
  EXPECT_EQ(p.tls->write(src), 1000u);  // the writer has now seen head 800
  *p.raw_u64(kHead0) = 100;
  EXPECT_EQ(p.tls->write(src), 0u);
  EXPECT_TRUE(p.tls->corrupt());
}

// Two processes, the real wake-up protocol: a byte on a socketpair only when
// the other side said it sleeps. 64 MiB must arrive intact, and no side may
// wait 5 s for a wake-up that never comes (a lost wake-up fails the test).
// Run once with a slow reader (the writer keeps finding the ring full) and
// once with a slow writer (the reader keeps finding it empty).
struct PairRun {
  bool lost = false, intact = true;
  size_t got = 0, reader_sleeps = 0;
  int writer_status = -1;
};

PairRun run_two_processes(bool slow_writer) {
  Pair p;
  PairRun out;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return out;
  constexpr size_t kTotal = 64u << 20;
  auto wait = [](int fd) {
    pollfd pf{fd, POLLIN, 0};
    if (poll(&pf, 1, 5000) != 1) return false;
    uint8_t b[64];
    return read(fd, b, sizeof b) > 0;
  };
  const auto chunk = pattern(256 * 1024, 9);
  const pid_t pid = fork();
  if (pid < 0) return out;
  if (pid == 0) {  // writer: the forwarding side
    close(sv[0]);
    std::vector<uint8_t> piece(chunk.size());
    size_t sent = 0;
    while (sent < kTotal) {
      // Slow: make each byte (about 1 GB/s); fast: one memcpy.
      if (slow_writer)
        for (size_t i = 0; i < piece.size(); i++)
          piece[i] = static_cast<uint8_t>((i * 131 + 9) >> 3);
      else
        std::memcpy(piece.data(), chunk.data(), piece.size());
      size_t off = 0;
      for (int spins = 0; off < piece.size() && spins < 1000000; spins++) {
        const size_t n = p.fwd->write(Bytes(piece).subspan(off));
        off += n;
        if (n > 0 && p.fwd->take_reader_sleeping()) (void)!write(sv[1], "x", 1);
        if (n == 0 && p.fwd->wait_for_space() && !wait(sv[1])) _exit(3);
      }
      sent += piece.size();
    }
    _exit(p.fwd->corrupt() ? 4 : 0);
  }
  close(sv[1]);
  std::vector<uint8_t> buf(chunk.size());
  size_t off = 0;
  while (out.got < kTotal && out.intact) {
    const size_t n = p.tls->read(std::span<uint8_t>(buf).first(chunk.size() - off));
    if (slow_writer) {
      out.intact = std::memcmp(buf.data(), chunk.data() + off, n) == 0;
    } else {
      for (size_t i = 0; i < n && out.intact; i++) out.intact = buf[i] == chunk[off + i];
    }
    off = (off + n) % chunk.size();
    out.got += n;
    if (n > 0 && p.tls->take_writer_sleeping()) (void)!write(sv[0], "x", 1);
    if (n == 0 && p.tls->wait_for_data()) {
      out.reader_sleeps++;
      if (!wait(sv[0])) {
        out.lost = true;
        break;
      }
    }
  }
  if (out.lost || !out.intact) kill(pid, SIGKILL);
  int st = 0;
  if (waitpid(pid, &st, 0) == pid && WIFEXITED(st)) out.writer_status = WEXITSTATUS(st);
  close(sv[0]);
  if (p.tls->corrupt()) out.intact = false;
  return out;
}

TEST(ShmRing, TwoProcessesMove64MiBWithWakeUpsOnlyWhenAskedSlowReader) {
  const PairRun r = run_two_processes(false);
  EXPECT_FALSE(r.lost) << "a wake-up was lost after " << r.got << " bytes";
  EXPECT_TRUE(r.intact) << "bytes differ near " << r.got;
  EXPECT_EQ(r.got, 64u << 20);
  EXPECT_EQ(r.writer_status, 0);
}

TEST(ShmRing, TwoProcessesMove64MiBWithWakeUpsOnlyWhenAskedSlowWriter) {
  const PairRun r = run_two_processes(true);
  EXPECT_FALSE(r.lost) << "a wake-up was lost after " << r.got << " bytes";
  EXPECT_TRUE(r.intact) << "bytes differ near " << r.got;
  EXPECT_EQ(r.got, 64u << 20);
  EXPECT_EQ(r.writer_status, 0);
  EXPECT_GT(r.reader_sleeps, 0u);  // the empty-ring path was taken, and always woken
}

}  // namespace
}  // namespace ct
