// Name resolution that does not stop the loop (parent processes only: children
// never resolve names). getaddrinfo() takes no deadline and cannot be
// cancelled, and a DNS server that drops packets holds it for the resolver's
// whole timeout (resolv.conf: 5 s per try, per name server). Run on the loop,
// that froze the bridge's parent: no child restarted, no reload, no SIGTERM
// handled until it returned. So each lookup runs on a thread of its own and
// its answer comes back through an eventfd the loop watches. The caller keeps
// its own deadline and calls cancel(); a late answer is dropped.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "shared/os/loop.h"
#include "shared/os/net.h"

namespace ct {

class Resolver final : public Loop::Handler {
 public:
  // The address, or why the lookup failed (naming the host).
  using Done = std::function<void(Result<SockAddr> addr)>;
  explicit Resolver(Loop& loop);
  ~Resolver() override;
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Starts a lookup of hp (one at a time); `done` runs later, on the loop.
  void start(const HostPort& hp, Done done);
  // Forgets the lookup in flight: its thread finishes on its own, unheard.
  void cancel();
  bool busy() const { return job_ != nullptr; }

  void on_io(uint32_t events) noexcept override;

 private:
  struct Job;
  Loop& loop_;
  UniqueFd efd_;
  std::shared_ptr<Job> job_;
  Done done_;
};

}  // namespace ct
