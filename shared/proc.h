// Process plumbing: re-exec of our own binary for each child (a fresh address
// space that inherited nothing from the parent's heap), the child's side of
// the control channel, small file reads and systemd notification.
#pragma once

#include <sys/types.h>

#include <string>

#include "shared/unique_fd.h"

namespace ct {

// The control channel is always fd 3 in a child.
inline constexpr int kChildControlFd = 3;

// /proc/self/exe opened once at start, so restarts exec the same binary even
// after a package upgrade replaced the file.
bool open_self_exe(UniqueFd* out, std::string* err);
// fork + exec(self) with `role_flag` (e.g. "--child=tls"), `control` as fd 3,
// every other fd but 0-2 closed, signals unblocked, and SIGKILL on parent death.
pid_t spawn_child(int exe_fd, const std::string& argv0, const std::string& role_flag,
                  UniqueFd control);
// In a child: checks that fd 3 is our control channel and closes every fd
// above it. Exits 70 when started by hand without one.
UniqueFd child_take_control();
// Reads a file of at most `cap` bytes.
bool read_small_file(const std::string& path, size_t cap, std::string* out, std::string* err);
// One datagram to $NOTIFY_SOCKET (systemd Type=notify); no-op without it.
void sd_notify(const std::string& msg);
// Overwrites a string's bytes before it is freed (key material in the parent).
void wipe(std::string& s);

}  // namespace ct
