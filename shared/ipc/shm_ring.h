// The data channel's bytes travel through shared memory instead of a
// socketpair's kernel buffers: two single-producer single-consumer byte rings
// (one per direction) in one memfd that the parent creates, sizes and seals,
// and hands to both children (PEER_RING, before PEER_CHANNEL). The socketpair
// stays, for wake-ups and for EOF when the other process dies. Each byte is
// still copied once in (from the session's output) and once out (into the
// session's private input buffer, where it is parsed), exactly as send() and
// read() did, but without a syscall and a kernel buffer per write
// (docs/architecture.md, "Where a bulk byte goes").
//
// The other process is not trusted with our state: every position we own is
// kept here and only published to the shared page, never read back from it.
// What we read from the page (the peer's position, its sleep flags) is checked
// before use: a peer position that claims more bytes than the ring holds, or
// that moves backwards, is corruption and ends the channel. Payload bytes the
// peer changes under us are bytes it could have sent anyway: we never parse in
// place, the session parses its own copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "shared/base/bytes.h"
#include "shared/base/result.h"
#include "shared/base/unique_fd.h"

namespace ct {

class ShmRing {
 public:
  // Bytes per direction: like a socket buffer, the most one side can write
  // before the other reads. A power of two (positions are masked).
  static constexpr size_t kRingBytes = 1024 * 1024;
  static constexpr size_t kHeaderBytes = 4096;
  static constexpr size_t kFileBytes = kHeaderBytes + 2 * kRingBytes;
  // The file for rings of `ring_bytes` (the daemons use kRingBytes; the
  // fuzzer uses a page, so that a run copies kilobytes, not megabytes).
  static constexpr size_t file_bytes(size_t ring_bytes) { return kHeaderBytes + 2 * ring_bytes; }

  enum class Side { kTls = 0, kForward = 1 };  // tls writes ring 0, forward ring 1

  // Parent: a zero-filled memfd of kFileBytes, sealed against resizing, so
  // neither child can make the other's mapping fault. Invalid on failure,
  // with *err the errno.
  // `ring_bytes`: a power of two, at least 64; the same in create() and map().
  static UniqueFd create(int* err, size_t ring_bytes = kRingBytes);
  // Child: maps the parent's memfd (read/write, never executable).
  static Result<std::unique_ptr<ShmRing>> map(int fd, Side side, size_t ring_bytes = kRingBytes);
  // Fresh positions over a mapping of file_bytes(ring_bytes) that the caller
  // made and keeps (never unmapped here): the fuzzer starts thousands of
  // rings a second on one mapping, where a munmap each would cost most of
  // its time (the TLB shootdown of a threaded process).
  static std::unique_ptr<ShmRing> attach(uint8_t* base, Side side, size_t ring_bytes);
  ~ShmRing();
  ShmRing(const ShmRing&) = delete;
  ShmRing& operator=(const ShmRing&) = delete;

  // --- producing (our outgoing ring)
  // Copies as much of `data` as fits; returns how much.
  size_t write(Bytes data);
  // After write(): true when the reader said it sleeps and must be woken
  // (one byte on the socketpair). Clears the flag.
  bool take_reader_sleeping();
  // The ring is full: asks the reader to wake us when it frees space. Returns
  // false when space appeared meanwhile (write again instead of waiting).
  bool wait_for_space();

  // --- consuming (our incoming ring)
  // Copies up to out.size() bytes into out; returns how much.
  size_t read(std::span<uint8_t> out);
  // After read(): true when the writer waits for space and must be woken.
  bool take_writer_sleeping();
  // The ring is empty: asks the writer to wake us when it writes. Returns
  // false when bytes arrived meanwhile (read again instead of waiting).
  bool wait_for_data();

  // The peer published a position that cannot be true; the channel is over.
  bool corrupt() const { return !corrupt_.empty(); }
  const std::string& corruption() const { return corrupt_; }

 private:
  struct Dir;  // one direction's shared fields
  ShmRing(uint8_t* base, Side side, size_t ring_bytes, bool owned);
  uint64_t peer_pos(uint64_t* field, uint64_t mine, bool producer);

  uint8_t* base_;
  size_t ring_bytes_;  // a power of two
  uint64_t mask_;      // ring_bytes_ - 1
  bool owned_;         // map() made the mapping: unmapped with us
  Dir* out_dir_;
  Dir* in_dir_;
  uint8_t* out_ring_;
  uint8_t* in_ring_;
  uint64_t tail_ = 0;       // our write position in the outgoing ring (only ours)
  uint64_t head_ = 0;       // our read position in the incoming ring (only ours)
  uint64_t seen_head_ = 0;  // the reader's last published position, to refuse going back
  uint64_t seen_tail_ = 0;  // the writer's last published position, likewise
  std::string corrupt_;
};

}  // namespace ct
