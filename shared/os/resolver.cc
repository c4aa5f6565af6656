#include "shared/os/resolver.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>

#include "shared/base/check.h"

namespace ct {

// Shared by the loop and one lookup thread. The thread owns a duplicate of the
// eventfd, so it can always signal, even after the Resolver is gone.
struct Resolver::Job {
  std::mutex mu;
  bool finished = false;
  std::optional<SockAddr> addr;
  std::string err;
  UniqueFd efd;
};

Resolver::Resolver(Loop& loop) : loop_(loop), efd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  CT_CHECK(efd_.valid());
  loop_.add(efd_.get(), EPOLLIN, this);
}

Resolver::~Resolver() {
  loop_.del(efd_.get());
}

void Resolver::start(const HostPort& hp, Done done) {
  CT_CHECK(!busy());
  auto job = std::make_shared<Job>();
  job->efd.reset(::fcntl(efd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!job->efd) {
    job->finished = true;
    job->err = std::string("cannot resolve ") + hp.host + ": " + std::strerror(errno);
  } else {
    try {
      std::thread([job, hp] {
        auto addr = resolve(hp);
        {
          std::lock_guard<std::mutex> lock(job->mu);
          if (addr)
            job->addr = *addr;
          else
            job->err = addr.what();
          job->finished = true;
        }
        const uint64_t one = 1;
        (void)!::write(job->efd.get(), &one, sizeof one);
      }).detach();
    } catch (const std::system_error& e) {
      job->finished = true;
      job->err =
          std::string("cannot resolve ") + hp.host + ": no thread for the lookup: " + e.what();
    }
  }
  job_ = std::move(job);
  done_ = std::move(done);
  if (job_->finished) {  // failed to start: answer through the loop like any other
    const uint64_t one = 1;
    (void)!::write(efd_.get(), &one, sizeof one);
  }
}

void Resolver::cancel() {
  job_.reset();
  done_ = nullptr;
}

void Resolver::on_io(uint32_t) noexcept {
  uint64_t n = 0;
  (void)!::read(efd_.get(), &n, sizeof n);
  if (!job_) return;  // a cancelled lookup's late answer
  std::optional<SockAddr> addr;
  std::string err;
  {
    std::lock_guard<std::mutex> lock(job_->mu);
    if (!job_->finished) return;
    addr = job_->addr;
    err = job_->err;
  }
  job_.reset();
  Done done = std::move(done_);
  done_ = nullptr;
  if (addr)
    done(*addr);
  else
    done(fail(err));
}

}  // namespace ct
