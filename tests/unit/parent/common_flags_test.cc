#include "shared/parent/common_flags.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/unit/parent/temp_dir.h"

namespace ct {
namespace {

constexpr char kPin[] = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

std::vector<FlagSpec> specs() {
  return join_flag_specs({
      identity_flag_specs(
          {"cert", "key", "bridges", "bridge certificates", "bridge", "bridges", "broker"}),
      {{"drain-timeout", "SECONDS", "drain"}, {"memory-budget", "MIB", "budget"}},
      last_flag_specs(),
  });
}

// Parses `args` as the broker would; returns parse_common_flags's verdict.
int parse(std::vector<std::string> args, CommonFlags* out) {
  args.insert(args.begin(), "cloudtaser-broker");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  Flags f(specs());
  if (!f.parse(static_cast<int>(argv.size()), argv.data())) return -2;
  return parse_common_flags(f, "cloudtaser-broker", "summary", {"cert"}, "bridge-pin", out);
}

TEST(CommonFlags, TheSharedFlagsFillTheChildSettingsAndPins) {
  CommonFlags c;
  ASSERT_EQ(parse({"--cert", "c", "--drain-timeout", "7", "--memory-budget", "64", "--bridge-pin",
                   kPin, "--bridge-pin-file", "p"},
                  &c),
            -1);
  EXPECT_EQ(c.settings.drain_timeout_ms, 7000u);
  EXPECT_EQ(c.settings.memory_budget_mib, 64u);
  EXPECT_EQ(c.pins.size(), 1u);
  EXPECT_EQ(c.pin_file, "p");
  EXPECT_EQ(c.peer(), "bridge");
  EXPECT_FALSE(c.insecure_no_pin);
}

TEST(CommonFlags, ABadValueOrAMissingFlagIsAUsageError) {
  CommonFlags c;
  EXPECT_EQ(parse({"--cert", "c", "--memory-budget", "0"}, &c), kExitUsage);
  EXPECT_EQ(parse({"--cert", "c", "--drain-timeout", "3601"}, &c), kExitUsage);
  EXPECT_EQ(parse({"--cert", "c", "--bridge-pin", "sha256//short"}, &c), kExitUsage);
  EXPECT_EQ(parse({"--drain-timeout", "5"}, &c), kExitUsage);  // no --cert
}

TEST(CommonFlags, WithoutAPinTheFileBesideTheCertificateIsUsed) {
  test::TempDir dir;
  const std::string cert = dir.write("tls.crt", "cert");
  CommonFlags c;
  c.pin_flag = "bridge-pin";
  const auto none = choose_pin_source(cert, "bridge.pin", &c);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.what().find(dir.path("bridge.pin")), std::string::npos) << none.what();
  EXPECT_NE(none.what().find("--insecure-no-pin"), std::string::npos) << none.what();
  const std::string pins = dir.write("bridge.pin", kPin);
  const auto found = choose_pin_source(cert, "bridge.pin", &c);
  EXPECT_TRUE(found.ok()) << found.what();
  EXPECT_EQ(c.pin_file, pins);
}

TEST(CommonFlags, InsecureNoPinContradictsAGivenPin) {
  CommonFlags c;
  c.pin_flag = "bridge-pin";
  c.insecure_no_pin = true;
  EXPECT_TRUE(choose_pin_source("/nonexistent/tls.crt", "bridge.pin", &c).ok());
  EXPECT_TRUE(c.pin_file.empty());  // no default file is looked for
  c.pin_file = "p";
  const auto both = choose_pin_source("/nonexistent/tls.crt", "bridge.pin", &c);
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.what(), "--insecure-no-pin contradicts --bridge-pin/--bridge-pin-file: drop one");
}

TEST(CommonFlags, TheIdentityFlagsNameThisDaemonsFilesAndPeer) {
  const auto s = identity_flag_specs({"client-cert", "client-key", "the broker",
                                      "the broker's certificate", "broker", "a broker", "bridge"});
  ASSERT_EQ(s.size(), 6u);
  EXPECT_EQ(s[0].name, "client-cert");
  EXPECT_EQ(s[1].help, "PEM private key of --client-cert (unencrypted)");
  EXPECT_EQ(s[2].help, "PEM CA certificate(s) that the broker's certificate must chain to");
  EXPECT_EQ(s[3].name, "broker-pin-file");
  EXPECT_TRUE(s[4].repeatable);
  EXPECT_NE(s[5].help.find("the bridge refuses to start when neither --broker-pin, "
                           "--broker-pin-file nor broker.pin beside --client-cert gives a pin"),
            std::string::npos)
      << s[5].help;
}

}  // namespace
}  // namespace ct
