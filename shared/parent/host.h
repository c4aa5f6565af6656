// What the parent asks of the host it runs on, and only the parent: systemd's
// notification socket and the file descriptor limit its children inherit.
#pragma once

#include <cstdint>
#include <string>

#include "shared/base/result.h"

namespace ct {

// One datagram to $NOTIFY_SOCKET (systemd Type=notify); no-op without it.
void sd_notify(const std::string& msg);
// Raises the soft RLIMIT_NOFILE to the hard limit (children inherit it: the
// forwarding processes hold one fd per wrapper or OpenBao connection, and a
// soft limit of 1024 would fail streams long before the stream limit).
// *from/*to are the soft limits before and after (*from also on failure).
Result<void> raise_fd_limit(uint64_t* from, uint64_t* to);

}  // namespace ct
