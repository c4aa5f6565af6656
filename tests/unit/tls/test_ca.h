// A CA (P-256) made by the openssl command in a temporary directory, and
// server certificates it issues: for tests of the TLS layer that need real
// certificates but no daemon.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "tests/unit/parent/temp_dir.h"

namespace ct::test {

// A whole file as a string.
inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class TestCa {
 public:
  explicit TestCa(const std::string& name) : name_(name) {
    run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj '/CN=" +
        name + "' -keyout " + dir_.path("ca.key") + " -out " + dir_.path("ca.crt"));
  }
  std::string ca_pem() const { return slurp(dir_.path("ca.crt")); }
  // A serverAuth certificate carrying `sans` ("DNS:x,IP:y"), and its key.
  std::pair<std::string, std::string> issue(const std::string& cn, const std::string& sans) const {
    const std::string base = dir_.path(cn);
    dir_.write(cn + ".ext", "subjectAltName=" + sans + "\nextendedKeyUsage=serverAuth\n", 0644);
    run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=" + cn +
        "' -keyout " + base + ".key -out " + base + ".csr");
    run("openssl x509 -req -in " + base + ".csr -CA " + dir_.path("ca.crt") + " -CAkey " +
        dir_.path("ca.key") + " -CAcreateserial -days 2 -extfile " + base + ".ext -out " + base +
        ".crt");
    return {slurp(base + ".crt"), slurp(base + ".key")};
  }

 private:
  static void run(const std::string& cmd) {
    ASSERT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
  }
  std::string name_;
  test::TempDir dir_;
};

}  // namespace ct::test
