#include "shared/base/log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace ct::log {

namespace {
char g_daemon[32] = "cloudtaser";
char g_process[16] = "main";
Level g_level = kInfo;
uint64_t g_dropped = 0;
// The tail of a line a stream socket took only in part. It goes out before
// any later line of ours, so what we write is always whole lines: a half line
// followed by the next would merge two events into one unparseable line.
// (A pipe takes a line of this size whole or not at all, PIPE_BUF; a unix
// stream socket does too, one skb; TCP may split it.)
char g_rest[1024];
size_t g_rest_len = 0;
const char* const kLevelNames[] = {"error", "warn", "info", "debug"};

void copy_name(char* dst, size_t cap, std::string_view s) {
  const size_t n = s.size() < cap - 1 ? s.size() : cap - 1;
  std::memcpy(dst, s.data(), n);
  dst[n] = '\0';
}

__attribute__((format(printf, 3, 0))) void vemit(Level l, int err, const char* fmt, va_list ap) {
  char line[1024];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  int n = std::snprintf(line, sizeof line,
                        "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%s] %s: ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        ts.tv_nsec / 1000000, g_daemon, g_process, kLevelNames[l]);
  if (n < 0) return;
  size_t len = static_cast<size_t>(n);
  int m = std::vsnprintf(line + len, sizeof line - len, fmt, ap);
  if (m > 0) len = std::min(sizeof line - 2, len + static_cast<size_t>(m));
  if (err != 0 && len < sizeof line - 2) {
    char ebuf[128];
    const char* es = strerror_r(err, ebuf, sizeof ebuf);
    m = std::snprintf(line + len, sizeof line - len, ": %s", es);
    if (m > 0) len = std::min(sizeof line - 2, len + static_cast<size_t>(m));
  }
  // Neutralise control characters so one event stays one line.
  for (size_t i = 0; i < len; i++)
    if (static_cast<unsigned char>(line[i]) < 0x20) line[i] = '?';
  line[len++] = '\n';
  if (g_rest_len > 0) {
    const ssize_t r = ::write(STDERR_FILENO, g_rest, g_rest_len);
    if (r > 0) {
      std::memmove(g_rest, g_rest + r, g_rest_len - static_cast<size_t>(r));
      g_rest_len -= static_cast<size_t>(r);
    }
    if (g_rest_len > 0) {
      g_dropped++;  // still blocked: this line is dropped whole, never started
      return;
    }
  }
  // One write per line: lines from the three processes never interleave.
  const ssize_t w = ::write(STDERR_FILENO, line, len);
  if (w == static_cast<ssize_t>(len)) return;
  if (w <= 0) {
    g_dropped++;
    return;
  }
  g_rest_len = len - static_cast<size_t>(w);
  std::memcpy(g_rest, line + w, g_rest_len);
}
}  // namespace

void init(std::string_view daemon, std::string_view process, Level level) {
  copy_name(g_daemon, sizeof g_daemon, daemon);
  copy_name(g_process, sizeof g_process, process);
  g_level = level;
  // glibc reads /etc/localtime on the first time conversion; do it now, before
  // a sandbox forbids opening files.
  tzset();
  struct stat st;
  if (fstat(STDERR_FILENO, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
    const int fl = fcntl(STDERR_FILENO, F_GETFL);
    if (fl >= 0) fcntl(STDERR_FILENO, F_SETFL, fl | O_NONBLOCK);
  }
}

void set_process(std::string_view process) {
  copy_name(g_process, sizeof g_process, process);
}
void set_level(Level level) {
  g_level = level;
}
Level level() {
  return g_level;
}
uint64_t dropped_lines() {
  return g_dropped;
}

bool parse_level(std::string_view s, Level* out) {
  for (int i = 0; i <= kDebug; i++) {
    if (s == kLevelNames[i]) {
      *out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

void msg(Level l, const char* fmt, ...) {
  if (l > g_level) return;
  va_list ap;
  va_start(ap, fmt);
  vemit(l, 0, fmt, ap);
  va_end(ap);
}

void msg_errno(Level l, int err, const char* fmt, ...) {
  if (l > g_level) return;
  va_list ap;
  va_start(ap, fmt);
  vemit(l, err, fmt, ap);
  va_end(ap);
}

}  // namespace ct::log
