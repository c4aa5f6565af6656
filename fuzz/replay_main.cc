// Corpus replay without libFuzzer: `make fuzz-replay` links each target with
// this main (g++, the normal build flags) and runs LLVMFuzzerTestOneInput on
// every file under the target's corpus directory, so every committed input,
// regressions included, is rerun by `make test`. A crash or a failed oracle
// aborts the process and fails the build.
//
//   replay <target-name> <dir-or-file>...
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// The input being run, for the crash message (set before each run).
std::string g_current;

// Names the input that crashed, then dies of the same signal.
extern "C" void on_fatal_signal(int sig) {
  static const char kMsg[] = "replay: crashed on input ";
  (void)!write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
  (void)!write(STDERR_FILENO, g_current.data(), g_current.size());
  (void)!write(STDERR_FILENO, "\n", 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

bool read_file(const std::filesystem::path& p, std::vector<uint8_t>* out) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return false;
  out->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return !f.bad();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <target-name> <dir-or-file>...\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  std::vector<std::filesystem::path> files;
  for (int i = 2; i < argc; i++) {
    const std::filesystem::path root = argv[i];
    std::error_code ec;
    if (std::filesystem::is_regular_file(root, ec)) {
      files.push_back(root);
      continue;
    }
    if (!std::filesystem::is_directory(root, ec)) {
      std::fprintf(stderr, "%s: %s: no such file or directory\n", name.c_str(), argv[i]);
      return 2;
    }
    for (const auto& e : std::filesystem::recursive_directory_iterator(root, ec))
      if (e.is_regular_file()) files.push_back(e.path());
    if (ec) {
      std::fprintf(stderr, "%s: %s: %s\n", name.c_str(), argv[i], ec.message().c_str());
      return 2;
    }
  }
  // A fixed order, so a failure names the same file on every machine.
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "%s: empty corpus\n", name.c_str());
    return 2;
  }
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) signal(sig, on_fatal_signal);
  std::vector<uint8_t> buf;
  for (const auto& p : files) {
    if (!read_file(p, &buf)) {
      std::fprintf(stderr, "%s: cannot read %s\n", name.c_str(), p.c_str());
      return 2;
    }
    // A copy of exactly the input's size, so that ASan builds catch any read
    // past the end just as libFuzzer would.
    std::vector<uint8_t> input(buf);
    g_current = p.string();
    LLVMFuzzerTestOneInput(input.data(), input.size());
  }
  std::printf("%s: %zu inputs replayed\n", name.c_str(), files.size());
  return 0;
}
