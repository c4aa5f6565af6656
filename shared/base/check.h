// CT_CHECK: an impossible state aborts the process (error policy, docs/
// architecture.md). It is never used for anything a peer can cause.
#pragma once

#include <cstdio>
#include <cstdlib>

#define CT_CHECK(cond)                                                                      \
  do {                                                                                      \
    if (!(cond)) [[unlikely]] {                                                             \
      std::fprintf(stderr, "internal error: %s:%d: check failed: %s\n", __FILE__, __LINE__, \
                   #cond);                                                                  \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)
