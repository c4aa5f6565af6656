// Notices that material files changed, by polling their identity (device,
// inode, size, mtime): a rewrite in place and a Kubernetes Secret's symlink
// swap both change it, and polling needs no inotify descriptor per directory
// level a symlink chain passes through.
#pragma once

#include <string>
#include <vector>

#include "shared/base/time.h"

namespace ct {

class FileWatcher {
 public:
  FileWatcher(std::vector<std::string> paths, Duration period)
      : paths_(std::move(paths)), period_(period) {}

  // The files' identity now; a missing file counts as "missing" (so that its
  // return is a change too).
  std::string stamp() const;
  // What the files are now counts as seen; the first look is due a period on.
  void start(TimePoint now);
  // At most one look per period (false before it is due): whether the files
  // differ from the stamp last recorded. It does not record the new stamp:
  // the reload does, with record(), once it has read the files, so that a
  // reload that could not run is tried again at the next look.
  bool changed(TimePoint now);
  void record(std::string stamp) { seen_ = std::move(stamp); }
  // When the next look is due (max before start()).
  TimePoint deadline() const { return next_; }

 private:
  std::vector<std::string> paths_;
  Duration period_;
  std::string seen_;
  TimePoint next_ = TimePoint::max();
};

}  // namespace ct
