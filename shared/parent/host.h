// What the parent asks of the host it runs on, and only the parent: systemd's
// notification socket and the file descriptor limit its children inherit.
#pragma once

#include <cstdint>
#include <string>

#include "shared/base/result.h"
#include "shared/base/unique_fd.h"
#include "shared/os/net.h"

namespace ct {

// One datagram to $NOTIFY_SOCKET (systemd Type=notify); no-op without it.
void sd_notify(const std::string& msg);
// Raises the soft RLIMIT_NOFILE to the hard limit (children inherit it: the
// forwarding processes hold one fd per wrapper or OpenBao connection, and a
// soft limit of 1024 would fail streams long before the stream limit).
// *from/*to are the soft limits before and after (*from also on failure).
Result<void> raise_fd_limit(uint64_t* from, uint64_t* to);

// A listening socket for a flag's numeric ADDR:PORT (port 0: any free one);
// *bound gets the address with the real port (the daemons log it and tests
// read it). A failure is one line naming `flag` and the value.
Result<void> bind_listener(const std::string& spec, const char* flag, UniqueFd* out,
                           SockAddr* bound);

}  // namespace ct
