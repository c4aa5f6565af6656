// A temporary directory for one test, removed with everything in it.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace ct::test {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ct-parent-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string path(const std::string& name) const { return path_ + "/" + name; }
  // Writes (or rewrites in place) `name` with `text` and `mode`.
  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) const {
    const std::string p = path(name);
    {
      std::ofstream f(p, std::ios::binary | std::ios::trunc);
      f << text;
    }
    chmod(p.c_str(), mode);
    return p;
  }

 private:
  std::string path_;
};

}  // namespace ct::test
