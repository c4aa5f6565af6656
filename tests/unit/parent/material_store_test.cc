#include "shared/parent/material_store.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/parent/temp_dir.h"

namespace ct {
namespace {

constexpr char kPin[] = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

// The files of one daemon, and a store over them whose check refuses any
// certificate text that says "bad" (as a TLS context refuses a broken key).
struct Fixture {
  test::TempDir dir;
  std::string cert = dir.write("tls.crt", "cert-1", 0644);
  std::string key = dir.write("tls.key", "key-1", 0600);
  std::string ca = dir.write("ca.crt", "ca-1", 0644);
  int validations = 0;
  MaterialStore store{{cert, key, ca, "", "", "", {}, "bridge-pin"},
                      [this](const Material& m, std::string* err) {
                        validations++;
                        if (m.cert_pem.find("bad") == std::string::npos) return true;
                        *err = "--cert/--key/--ca-cert: the key does not match";
                        return false;
                      }};
};

TEST(MaterialStore, LoadReadsTheFilesIntoTheGoodMaterial) {
  Fixture f;
  std::string err;
  ASSERT_TRUE(f.store.load(&err)) << err;
  EXPECT_TRUE(f.store.loaded());
  EXPECT_EQ(f.store.good().cert_pem, "cert-1");
  EXPECT_EQ(f.store.good().key_pem, "key-1");
  EXPECT_EQ(f.store.good().ca_pem, "ca-1");
  EXPECT_FALSE(f.store.pending());
}

TEST(MaterialStore, ProposeThenAcceptPutsTheCandidateInService) {
  Fixture f;
  std::string err;
  ASSERT_TRUE(f.store.load(&err)) << err;
  f.dir.write("tls.crt", "cert-2", 0644);
  ASSERT_TRUE(f.store.propose(&err)) << err;
  EXPECT_TRUE(f.store.pending());
  EXPECT_EQ(f.store.candidate().cert_pem, "cert-2");
  EXPECT_EQ(f.store.good().cert_pem, "cert-1");  // not before the TLS process says so
  ASSERT_TRUE(f.store.accept());
  EXPECT_EQ(f.store.good().cert_pem, "cert-2");
  EXPECT_FALSE(f.store.pending());
  EXPECT_TRUE(f.store.candidate().cert_pem.empty());
  EXPECT_TRUE(f.store.candidate().key_pem.empty());
}

TEST(MaterialStore, ProposeThenRefuseKeepsTheGoodMaterialAndWipesTheCandidate) {
  Fixture f;
  std::string err;
  ASSERT_TRUE(f.store.load(&err)) << err;
  f.dir.write("tls.crt", "cert-2", 0644);
  f.dir.write("tls.key", "key-2", 0600);
  ASSERT_TRUE(f.store.propose(&err)) << err;
  f.store.refuse();
  EXPECT_FALSE(f.store.pending());
  EXPECT_EQ(f.store.good().cert_pem, "cert-1");
  EXPECT_EQ(f.store.good().key_pem, "key-1");
  EXPECT_TRUE(f.store.candidate().cert_pem.empty());
  EXPECT_TRUE(f.store.candidate().key_pem.empty());
  // A verdict that comes after the refusal has nothing to put in service.
  EXPECT_FALSE(f.store.accept());
  EXPECT_EQ(f.store.good().key_pem, "key-1");
}

TEST(MaterialStore, ASecondProposeWhileOneIsPendingReplacesIt) {
  Fixture f;
  std::string err;
  ASSERT_TRUE(f.store.load(&err)) << err;
  f.dir.write("tls.crt", "cert-2", 0644);
  ASSERT_TRUE(f.store.propose(&err)) << err;
  f.dir.write("tls.crt", "cert-3", 0644);
  ASSERT_TRUE(f.store.propose(&err)) << err;
  EXPECT_EQ(f.store.candidate().cert_pem, "cert-3");
  ASSERT_TRUE(f.store.accept());
  EXPECT_EQ(f.store.good().cert_pem, "cert-3");
  EXPECT_FALSE(f.store.accept());  // one verdict, one candidate
}

TEST(MaterialStore, AProposeThatFailsLeavesThePendingCandidateAlone) {
  Fixture f;
  std::string err;
  ASSERT_TRUE(f.store.load(&err)) << err;
  f.dir.write("tls.crt", "cert-2", 0644);
  ASSERT_TRUE(f.store.propose(&err)) << err;
  f.dir.write("tls.crt", "bad cert", 0644);
  EXPECT_FALSE(f.store.propose(&err));
  EXPECT_EQ(err, "--cert/--key/--ca-cert: the key does not match");
  EXPECT_TRUE(f.store.pending());
  EXPECT_EQ(f.store.candidate().cert_pem, "cert-2");
  EXPECT_EQ(f.store.good().cert_pem, "cert-1");
}

TEST(MaterialStore, MaterialTheCheckRefusesIsNeverProposed) {
  Fixture f;
  std::string err;
  ASSERT_TRUE(f.store.load(&err)) << err;
  f.dir.write("tls.crt", "bad cert", 0644);
  EXPECT_FALSE(f.store.propose(&err));
  EXPECT_FALSE(f.store.pending());
  EXPECT_EQ(f.store.good().cert_pem, "cert-1");
  EXPECT_EQ(f.validations, 2);
}

// One line naming the file: what the daemon prints before it exits 2.
void expect_one_line_naming(const std::string& err, const std::string& path) {
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
}

TEST(MaterialStore, AFileOverTheCapIsRefusedInOneLineNamingIt) {
  Fixture f;
  f.dir.write("ca.crt", std::string(kMaxPemFile + 1, 'x'), 0644);
  std::string err;
  EXPECT_FALSE(f.store.load(&err));
  EXPECT_EQ(err, "cannot read " + f.ca + ": larger than 64 KiB");
  expect_one_line_naming(err, f.ca);
  EXPECT_FALSE(f.store.loaded());
  EXPECT_EQ(f.validations, 0);
}

TEST(MaterialStore, AFileAtTheCapIsRead) {
  Fixture f;
  f.dir.write("ca.crt", std::string(kMaxPemFile - 1024, 'x'), 0644);
  std::string err;
  EXPECT_TRUE(f.store.load(&err)) << err;
}

TEST(MaterialStore, AKeyOthersCanReadIsRefusedInOneLineNamingIt) {
  Fixture f;
  chmod(f.key.c_str(), 0644);
  std::string err;
  EXPECT_FALSE(f.store.load(&err));
  expect_one_line_naming(err, f.key);
  EXPECT_NE(err.find("mode 0644"), std::string::npos) << err;
  // The same mode on a certificate is fine: only keys are secret.
  chmod(f.key.c_str(), 0600);
  EXPECT_TRUE(f.store.load(&err)) << err;
}

TEST(MaterialStore, AKeyTheGroupMayWriteIsRefused) {
  Fixture f;
  chmod(f.key.c_str(), 0620);
  std::string err;
  EXPECT_FALSE(f.store.load(&err));
  expect_one_line_naming(err, f.key);
}

TEST(MaterialStore, AMissingFileIsNamed) {
  Fixture f;
  unlink(f.cert.c_str());
  std::string err;
  EXPECT_FALSE(f.store.load(&err));
  EXPECT_EQ(err, "cannot read " + f.cert + ": No such file or directory");
}

TEST(MaterialStore, AReloadThatCannotReadAFileKeepsTheGoodMaterial) {
  Fixture f;
  std::string err;
  ASSERT_TRUE(f.store.load(&err)) << err;
  chmod(f.key.c_str(), 0604);
  EXPECT_FALSE(f.store.propose(&err));
  expect_one_line_naming(err, f.key);
  EXPECT_FALSE(f.store.pending());
  EXPECT_EQ(f.store.good().key_pem, "key-1");
}

struct PinFixture : Fixture {
  std::string pins_path = dir.write("bridge.pin", "", 0644);
  MaterialStore pinned{{cert, key, ca, "", "", pins_path, {}, "bridge-pin"},
                       [](const Material&, std::string*) { return true; }};
};

TEST(MaterialStore, PinFileLinesAreReadSkippingCommentsAndBlanks) {
  PinFixture f;
  f.dir.write("bridge.pin", std::string("# rotated 2026-11\n\n  ") + kPin + " \r\n", 0644);
  std::string err;
  ASSERT_TRUE(f.pinned.load(&err)) << err;
  EXPECT_EQ(f.pinned.good().pins.size(), 1u);
}

TEST(MaterialStore, ABadPinLineIsNamedByFileAndLine) {
  PinFixture f;
  f.dir.write("bridge.pin", std::string(kPin) + "\nsha256//short\n", 0644);
  std::string err;
  EXPECT_FALSE(f.pinned.load(&err));
  EXPECT_EQ(err, f.pins_path + ":2: not a pin (expected sha256//<base64 of 32 bytes>)");
}

TEST(MaterialStore, APinFileWithoutAPinIsRefused) {
  PinFixture f;
  f.dir.write("bridge.pin", "# being rewritten\n", 0644);
  std::string err;
  EXPECT_FALSE(f.pinned.load(&err));
  expect_one_line_naming(err, f.pins_path);
  EXPECT_NE(err.find("no pin in the file"), std::string::npos) << err;
}

TEST(MaterialStore, TheWatchedPathsAreTheOnesGiven) {
  const MaterialFiles files{"c", "k", "a", "", "", "p", {}, "broker-pin"};
  EXPECT_EQ(files.paths(), (std::vector<std::string>{"c", "k", "a", "p"}));
}

}  // namespace
}  // namespace ct
