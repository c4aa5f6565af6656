// The parent's outbound connection for its TLS process: a name looked up on
// every dial (off the loop, so a DNS server that never answers cannot freeze
// the parent), a non-blocking connect, and one deadline over both. One dial
// at a time. The bridge dials its broker (or a beacon), the broker a beacon.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "shared/base/result.h"
#include "shared/base/unique_fd.h"
#include "shared/ipc/channel.h"
#include "shared/os/loop.h"
#include "shared/os/net.h"
#include "shared/os/resolver.h"

namespace ct {

inline constexpr auto kDialTimeout = std::chrono::seconds(10);

class Dialer final : public Loop::Handler {
 public:
  // The connected socket, or why not (one line naming the target).
  using Done = std::function<void(Result<UniqueFd>)>;
  explicit Dialer(Loop& loop) : loop_(loop), resolver_(loop) {}
  ~Dialer() override { abandon(); }

  bool busy() const { return fd_ || resolver_.busy(); }
  // Starts a dial (the caller checks busy() first); `done` runs on the loop.
  void start(const HostPort& to, Done done);
  // Forgets the dial in flight, whichever step it is at; `done` never runs.
  void abandon() noexcept;
  // Fails the dial whose deadline passed; returns the next deadline.
  TimePoint tick(TimePoint now) noexcept;

  void on_io(uint32_t events) noexcept override;

 private:
  void connect_to(const SockAddr& addr) noexcept;
  void finish(Result<UniqueFd> r) noexcept;
  Loop& loop_;
  Resolver resolver_;
  HostPort to_;
  UniqueFd fd_;
  TimePoint deadline_ = TimePoint::max();
  std::string target_;
  Done done_;
};

// The answer to the TLS process's DIAL_REQUEST: DIALED with the socket, or
// DIAL_FAILED with why. Nothing when the TLS process is gone (ch null).
void send_dial_result(IpcChannel* ch, const Result<UniqueFd>& fd);

}  // namespace ct
