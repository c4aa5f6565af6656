#include "shared/ipc/shm_ring.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "shared/base/check.h"

namespace ct {

// One direction's shared fields, each on its own cache line: the writer
// stores `tail` and clears `reader_sleeping`; the reader stores `head` and
// clears `writer_sleeping`; each sets the other flag before it sleeps.
struct ShmRing::Dir {
  alignas(64) uint64_t tail;
  alignas(64) uint64_t head;
  alignas(64) uint32_t reader_sleeping;
  alignas(64) uint32_t writer_sleeping;
};

static_assert((ShmRing::kRingBytes & (ShmRing::kRingBytes - 1)) == 0);

namespace {
bool valid_ring_size(size_t n) {
  return n >= 64 && (n & (n - 1)) == 0;
}
template <typename T>
std::atomic_ref<T> shared(T& field) {
  return std::atomic_ref<T>(field);
}
}  // namespace

UniqueFd ShmRing::create(int* err, size_t ring_bytes) {
  CT_CHECK(valid_ring_size(ring_bytes));
  UniqueFd fd(::memfd_create("cloudtaser-data-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(file_bytes(ring_bytes))) != 0 ||
      ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    *err = errno;
    return UniqueFd();
  }
  return fd;
}

Result<std::unique_ptr<ShmRing>> ShmRing::map(int fd, Side side, size_t ring_bytes) {
  CT_CHECK(valid_ring_size(ring_bytes));
  void* p = ::mmap(nullptr, file_bytes(ring_bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return fail_errno(errno, "mmap of the data channel ring");
  return std::unique_ptr<ShmRing>(new ShmRing(static_cast<uint8_t*>(p), side, ring_bytes, true));
}

std::unique_ptr<ShmRing> ShmRing::attach(uint8_t* base, Side side, size_t ring_bytes) {
  CT_CHECK(valid_ring_size(ring_bytes));
  return std::unique_ptr<ShmRing>(new ShmRing(base, side, ring_bytes, false));
}

ShmRing::ShmRing(uint8_t* base, Side side, size_t ring_bytes, bool owned)
    : base_(base), ring_bytes_(ring_bytes), mask_(ring_bytes - 1), owned_(owned) {
  static_assert(2 * 512 <= kHeaderBytes && sizeof(Dir) <= 512);
  Dir* d0 = reinterpret_cast<Dir*>(base_);
  Dir* d1 = reinterpret_cast<Dir*>(base_ + 512);
  uint8_t* r0 = base_ + kHeaderBytes;
  uint8_t* r1 = r0 + ring_bytes_;
  const bool tls = side == Side::kTls;
  out_dir_ = tls ? d0 : d1;
  in_dir_ = tls ? d1 : d0;
  out_ring_ = tls ? r0 : r1;
  in_ring_ = tls ? r1 : r0;  // a fresh file: every position starts at zero
}

ShmRing::~ShmRing() {
  if (owned_) ::munmap(base_, file_bytes(ring_bytes_));
}

// Reads the peer's position and checks it against ours: the reader's head
// lies in [its last value, our tail], and our tail is at most a ring ahead of
// it; the writer's tail lies in [its last value, our head + ring size].
uint64_t ShmRing::peer_pos(uint64_t* field, uint64_t mine, bool producer) {
  const uint64_t v = shared(*field).load(std::memory_order_seq_cst);
  if (producer) {
    if (v < seen_head_ || v > mine || mine - v > ring_bytes_) {
      corrupt_ = "the peer's read position is impossible";
      return mine;  // "full": nothing more is written
    }
    seen_head_ = v;
  } else {
    if (v < seen_tail_ || v < mine || v - mine > ring_bytes_) {
      corrupt_ = "the peer's write position is impossible";
      return mine;  // "empty": nothing more is read
    }
    seen_tail_ = v;
  }
  return v;
}

size_t ShmRing::write(Bytes data) {
  if (corrupt()) return 0;
  const uint64_t head = peer_pos(&out_dir_->head, tail_, true);
  if (corrupt()) return 0;
  const size_t space = ring_bytes_ - static_cast<size_t>(tail_ - head);
  const size_t n = std::min(space, data.size());
  if (n == 0) return 0;
  const size_t off = static_cast<size_t>(tail_ & mask_);
  const size_t first = std::min(n, ring_bytes_ - off);
  std::memcpy(out_ring_ + off, data.data(), first);
  std::memcpy(out_ring_, data.data() + first, n - first);
  tail_ += n;
  shared(out_dir_->tail).store(tail_, std::memory_order_seq_cst);
  return n;
}

bool ShmRing::take_reader_sleeping() {
  return shared(out_dir_->reader_sleeping).exchange(0, std::memory_order_seq_cst) != 0;
}

bool ShmRing::wait_for_space() {
  shared(out_dir_->writer_sleeping).store(1, std::memory_order_seq_cst);
  const uint64_t head = peer_pos(&out_dir_->head, tail_, true);
  if (corrupt()) return true;  // the caller sees corrupt() and closes
  if (tail_ - head < ring_bytes_) {
    shared(out_dir_->writer_sleeping).store(0, std::memory_order_relaxed);
    return false;
  }
  return true;
}

size_t ShmRing::read(std::span<uint8_t> out) {
  if (corrupt()) return 0;
  const uint64_t tail = peer_pos(&in_dir_->tail, head_, false);
  if (corrupt()) return 0;
  const size_t n = std::min(static_cast<size_t>(tail - head_), out.size());
  if (n == 0) return 0;
  const size_t off = static_cast<size_t>(head_ & mask_);
  const size_t first = std::min(n, ring_bytes_ - off);
  std::memcpy(out.data(), in_ring_ + off, first);
  std::memcpy(out.data() + first, in_ring_, n - first);
  head_ += n;
  shared(in_dir_->head).store(head_, std::memory_order_seq_cst);
  return n;
}

bool ShmRing::take_writer_sleeping() {
  return shared(in_dir_->writer_sleeping).exchange(0, std::memory_order_seq_cst) != 0;
}

bool ShmRing::wait_for_data() {
  shared(in_dir_->reader_sleeping).store(1, std::memory_order_seq_cst);
  const uint64_t tail = peer_pos(&in_dir_->tail, head_, false);
  if (corrupt()) return true;
  if (tail != head_) {
    shared(in_dir_->reader_sleeping).store(0, std::memory_order_relaxed);
    return false;
  }
  return true;
}

}  // namespace ct
