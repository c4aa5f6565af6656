// A connected TCP pair on 127.0.0.1 for tests that need real TCP (an RST,
// keepalive, socket options): the connecting end and the accepted end.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "shared/base/unique_fd.h"

namespace ct::test {

struct TcpPair {
  UniqueFd client;  // blocking
  UniqueFd server;  // accepted with `accept_flags` (e.g. SOCK_NONBLOCK)
};

inline TcpPair loopback_tcp_pair(int accept_flags = 0) {
  UniqueFd lst(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  EXPECT_EQ(::bind(lst.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(lst.get(), 1), 0);
  EXPECT_EQ(::getsockname(lst.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  TcpPair p;
  p.client = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(p.client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  p.server = UniqueFd(::accept4(lst.get(), nullptr, nullptr, accept_flags | SOCK_CLOEXEC));
  EXPECT_TRUE(p.server.valid());
  return p;
}

}  // namespace ct::test
