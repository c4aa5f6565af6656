// The one epoll loop of a process. Handlers are objects registered per fd;
// a handler that closes itself during a batch is retired, not deleted, so a
// later event of the same batch can never reach freed memory. Signals arrive
// through a signalfd; deadlines are timers (timers.h) whose owners re-arm them
// after their own work, so the loop never walks idle objects.
#pragma once

#include <sys/epoll.h>

#include <csignal>
#include <functional>
#include <memory>
#include <vector>

#include "shared/base/time.h"
#include "shared/base/unique_fd.h"
#include "shared/os/timers.h"

namespace ct {

class Loop {
 public:
  struct Handler {
    virtual ~Handler() = default;
    // Called with the epoll event mask. Must not throw.
    virtual void on_io(uint32_t events) noexcept = 0;
  };

  Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  void add(int fd, uint32_t events, Handler* h);
  void mod(int fd, uint32_t events, Handler* h);
  void del(int fd);
  // Deletes h once the current batch of events has been dispatched.
  void retire(std::unique_ptr<Handler> h) { graveyard_.push_back(std::move(h)); }

  // Blocks `signals` and delivers them through `on_signal` (signalfd).
  void watch_signals(std::initializer_list<int> signals, std::function<void(int)> on_signal);
  // Runs after every batch of events (and after timeouts): where processes
  // flush coalesced output, so many streams' frames leave in one write.
  void set_after_batch(std::function<void()> fn) { after_batch_ = std::move(fn); }

  // The heap every Timer of this process's loop lives in.
  TimerHeap& timers() { return timers_; }

  // Waits for events until `deadline` or the earliest timer at the latest,
  // dispatches them, fires the due timers, runs the after-batch hook.
  // Returns false once stop() was called.
  bool run_once(TimePoint deadline = TimePoint::max());
  void stop() { stopped_ = true; }
  bool stopped() const { return stopped_; }

 private:
  struct SignalHandler : Handler {
    UniqueFd fd;
    std::function<void(int)> fn;
    void on_io(uint32_t events) noexcept override;
  };
  UniqueFd epfd_;
  std::unique_ptr<SignalHandler> signals_;
  // Before the graveyard: retired handlers cancel their timers when they die.
  TimerHeap timers_;
  std::vector<std::unique_ptr<Handler>> graveyard_;
  std::function<void()> after_batch_;
  bool stopped_ = false;
};

}  // namespace ct
