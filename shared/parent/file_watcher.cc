#include "shared/parent/file_watcher.h"

#include <sys/stat.h>

namespace ct {

std::string FileWatcher::stamp() const {
  std::string s;
  for (const std::string& p : paths_) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) {
      s += "missing;";
      continue;
    }
    s += std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + ";";
  }
  return s;
}

void FileWatcher::start(TimePoint now) {
  seen_ = stamp();
  next_ = now + period_;
}

bool FileWatcher::changed(TimePoint now) {
  if (now < next_) return false;
  next_ = now + period_;
  return stamp() != seen_;
}

}  // namespace ct
