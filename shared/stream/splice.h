// Joins one local TCP socket (a wrapper on the broker, an OpenBao connection
// on the bridge) to one stream of the forwarding process's session with its
// TLS process. Bytes pass unchanged both ways; the socket is read only while
// the stream has send capacity, and stream data is consumed only once written
// to the socket, so nothing is buffered beyond one window. EOF becomes FIN,
// FIN becomes shutdown(SHUT_WR), a socket error becomes RESET (with the
// splice's `aborted` code: whose abort it was), and RESET
// closes the socket abortively (RST) so the far end sees an abrupt close. The
// socket is armed for RST from the start (SO_LINGER 0), so the death of this
// process aborts it too; only a clean end, both FINs exchanged, disarms it.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "shared/stream/link.h"

namespace ct {

class Splice final : public Loop::Handler {
 public:
  struct Owner {
    virtual ~Owner() = default;
    virtual void on_splice_done(Splice& s) noexcept = 0;  // retire it
    // It has bytes for its socket: call flush() on it at the end of the batch.
    virtual void on_splice_dirty(Splice& s) noexcept = 0;
  };
  // `connecting`: a non-blocking connect is in flight (bridge -> OpenBao).
  // `aborted`: the code the stream is reset with when the socket's peer
  // aborts (RST or another socket error): the broker names a wrapper's abort
  // CANCEL, the bridge names OpenBao's UPSTREAM_RESET, so that the broker's
  // stream_resets_total tells one from the other.
  Splice(Loop& loop, Owner& owner, Link& link, uint32_t id, UniqueFd fd, bool connecting,
         Code aborted);
  ~Splice() override;

  void on_io(uint32_t events) noexcept override;
  // Session events for this stream.
  void on_data(Bytes data) noexcept;
  void on_fin() noexcept;
  void on_reset(Code code) noexcept;
  void on_writable() noexcept;
  // The link died: drop the socket abortively.
  void abort() noexcept;
  // Writes the stream data that arrived since the last flush, in one
  // writev()/send(). Must run before the session's next input_space(): data
  // that arrived while nothing was queued is written straight from the
  // session's input buffer, and only what the socket does not take is copied.
  void flush() noexcept;

  // Bytes of our own that go to the socket before any stream data (the
  // bridge's PROXY protocol header): call right after construction, before
  // the first on_data(). They are never credited to the stream.
  void set_prefix(std::vector<uint8_t> bytes) noexcept;

  uint32_t id() const { return id_; }
  const Link& link() const { return link_; }
  // What the splice has allocated for stream bytes its socket has not taken
  // yet: within a quarter of those bytes, which the stream's credit bounds.
  size_t backlog_capacity() const { return out_.capacity(); }

 private:
  // EPOLLERR: reads SO_ERROR; if set, resets the stream and closes abortively.
  bool fail_on_socket_error() noexcept;
  void pump_read() noexcept;
  void pump_write() noexcept;
  void update_interest() noexcept;
  void finish(bool abortive) noexcept;
  void maybe_finish() noexcept;

  Loop& loop_;
  Owner& owner_;
  Link& link_;
  uint32_t id_;
  UniqueFd fd_;
  bool connecting_;
  Code aborted_;
  bool read_blocked_ = false;  // waiting for send capacity
  bool read_eof_ = false;      // socket EOF seen and FIN sent
  bool peer_fin_ = false;      // stream FIN received
  bool write_shut_ = false;    // shutdown(SHUT_WR) done
  bool done_ = false;
  bool dirty_ = false;  // queued for flush() at the end of the batch
  uint32_t interest_ = 0;
  std::vector<uint8_t> out_;  // stream data not yet written to the socket
  size_t out_pos_ = 0;
  size_t prefix_left_ = 0;  // of out_'s first bytes, how many are set_prefix()'s
  // Stream data not copied yet: spans into the session's input buffer, valid
  // for input epoch pend_epoch_ only. Non-empty only while out_ is empty.
  std::vector<Bytes> pend_;
  uint64_t pend_epoch_ = 0;
};

// The splices of a forwarding process: owns them, retires finished ones, and
// hands the data channel's stream events to the right one. The only index
// from a stream to its splice: a finished splice leaves it at once.
class SpliceTable final : public Splice::Owner {
 public:
  explicit SpliceTable(Loop& loop) : loop_(loop) {}
  // The stream must not have a splice already.
  Splice* add(Link& link, uint32_t id, UniqueFd fd, bool connecting, Code aborted);
  Splice* find(const Link& link, uint32_t id) const;
  // Data, Fin, Reset and Writable events go to their stream's splice.
  void dispatch(Link& link, const Event& ev) noexcept;
  // The data channel died: every socket is closed abortively.
  void abort_all(Link& link) noexcept;
  size_t size() const { return splices_.size(); }
  // How many of `link`'s streams have a splice.
  size_t streams_on(const Link& link) const;
  bool empty() const { return splices_.empty(); }
  void on_splice_done(Splice& s) noexcept override;
  void on_splice_dirty(Splice& s) noexcept override { dirty_.push_back(&s); }
  // Every splice that got data writes it in one send. Called after each
  // batch of the data channel's events (before its next read: see
  // Splice::flush) and at the end of each loop batch.
  void flush() noexcept;

 private:
  Loop& loop_;
  std::map<StreamKey, std::unique_ptr<Splice>> splices_;
  std::vector<Splice*> dirty_;
};

}  // namespace ct
