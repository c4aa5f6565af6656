#include "shared/parent/material_store.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/parent/temp_dir.h"

namespace ct {
namespace {

constexpr char kPin[] = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

// The files of one daemon, and a store over them whose check refuses any
// certificate text that says "bad" (as a TLS context refuses a broken key).
class MaterialStoreTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string cert = dir.write("tls.crt", "cert-1", 0644);
  std::string key = dir.write("tls.key", "key-1", 0600);
  std::string ca = dir.write("ca.crt", "ca-1", 0644);
  int validations = 0;
  MaterialStore store{{cert, key, ca, "", "", "", {}, "bridge-pin", "", "", {}},
                      [this](const Material& m) -> Result<void> {
                        validations++;
                        if (m.cert_pem.find("bad") == std::string::npos) return {};
                        return fail("--cert/--key/--ca-cert: the key does not match");
                      }};
  std::string err;
  // Keeps the error text where the assertions below read it.
  bool ok(const Result<void>& r) {
    err = r ? std::string() : r.what();
    return r.ok();
  }
};

TEST_F(MaterialStoreTest, LoadReadsTheFilesIntoTheGoodMaterial) {
  ASSERT_TRUE(ok(store.load())) << err;
  EXPECT_TRUE(store.loaded());
  EXPECT_EQ(store.good().cert_pem, "cert-1");
  EXPECT_EQ(store.good().key_pem, "key-1");
  EXPECT_EQ(store.good().ca_pem, "ca-1");
  EXPECT_FALSE(store.pending());
}

TEST_F(MaterialStoreTest, ProposeThenAcceptPutsTheCandidateInService) {
  ASSERT_TRUE(ok(store.load())) << err;
  dir.write("tls.crt", "cert-2", 0644);
  ASSERT_TRUE(ok(store.propose())) << err;
  EXPECT_TRUE(store.pending());
  EXPECT_EQ(store.candidate().cert_pem, "cert-2");
  EXPECT_EQ(store.good().cert_pem, "cert-1");  // not before the TLS process says so
  ASSERT_TRUE(store.accept());
  EXPECT_EQ(store.good().cert_pem, "cert-2");
  EXPECT_FALSE(store.pending());
  EXPECT_TRUE(store.candidate().cert_pem.empty());
  EXPECT_TRUE(store.candidate().key_pem.empty());
}

TEST_F(MaterialStoreTest, ProposeThenRefuseKeepsTheGoodMaterialAndWipesTheCandidate) {
  ASSERT_TRUE(ok(store.load())) << err;
  dir.write("tls.crt", "cert-2", 0644);
  dir.write("tls.key", "key-2", 0600);
  ASSERT_TRUE(ok(store.propose())) << err;
  store.refuse();
  EXPECT_FALSE(store.pending());
  EXPECT_EQ(store.good().cert_pem, "cert-1");
  EXPECT_EQ(store.good().key_pem, "key-1");
  EXPECT_TRUE(store.candidate().cert_pem.empty());
  EXPECT_TRUE(store.candidate().key_pem.empty());
  // A verdict that comes after the refusal has nothing to put in service.
  EXPECT_FALSE(store.accept());
  EXPECT_EQ(store.good().key_pem, "key-1");
}

TEST_F(MaterialStoreTest, ASecondProposeWhileOneIsPendingReplacesIt) {
  ASSERT_TRUE(ok(store.load())) << err;
  dir.write("tls.crt", "cert-2", 0644);
  ASSERT_TRUE(ok(store.propose())) << err;
  dir.write("tls.crt", "cert-3", 0644);
  ASSERT_TRUE(ok(store.propose())) << err;
  EXPECT_EQ(store.candidate().cert_pem, "cert-3");
  ASSERT_TRUE(store.accept());
  EXPECT_EQ(store.good().cert_pem, "cert-3");
  EXPECT_FALSE(store.accept());  // one verdict, one candidate
}

TEST_F(MaterialStoreTest, AProposeThatFailsLeavesThePendingCandidateAlone) {
  ASSERT_TRUE(ok(store.load())) << err;
  dir.write("tls.crt", "cert-2", 0644);
  ASSERT_TRUE(ok(store.propose())) << err;
  dir.write("tls.crt", "bad cert", 0644);
  EXPECT_FALSE(ok(store.propose()));
  EXPECT_EQ(err, "--cert/--key/--ca-cert: the key does not match");
  EXPECT_TRUE(store.pending());
  EXPECT_EQ(store.candidate().cert_pem, "cert-2");
  EXPECT_EQ(store.good().cert_pem, "cert-1");
}

TEST_F(MaterialStoreTest, MaterialTheCheckRefusesIsNeverProposed) {
  ASSERT_TRUE(ok(store.load())) << err;
  dir.write("tls.crt", "bad cert", 0644);
  EXPECT_FALSE(ok(store.propose()));
  EXPECT_FALSE(store.pending());
  EXPECT_EQ(store.good().cert_pem, "cert-1");
  EXPECT_EQ(validations, 2);
}

// One line naming the file: what the daemon prints before it exits 2.
void expect_one_line_naming(const std::string& err, const std::string& path) {
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
}

TEST_F(MaterialStoreTest, AFileOverTheCapIsRefusedInOneLineNamingIt) {
  dir.write("ca.crt", std::string(kMaxPemFile + 1, 'x'), 0644);
  EXPECT_FALSE(ok(store.load()));
  EXPECT_EQ(err, "cannot read " + ca + ": larger than 64 KiB");
  expect_one_line_naming(err, ca);
  EXPECT_FALSE(store.loaded());
  EXPECT_EQ(validations, 0);
}

TEST_F(MaterialStoreTest, AFileOfExactlyTheCapIsRead) {
  dir.write("ca.crt", std::string(kMaxPemFile, 'x'), 0644);
  EXPECT_TRUE(ok(store.load())) << err;
}

TEST_F(MaterialStoreTest, AKeyOthersCanReadIsRefusedInOneLineNamingIt) {
  chmod(key.c_str(), 0644);
  EXPECT_FALSE(ok(store.load()));
  expect_one_line_naming(err, key);
  EXPECT_NE(err.find("mode 0644"), std::string::npos) << err;
  // The certificates are 0644 too, and read: only keys are secret.
  chmod(key.c_str(), 0600);
  EXPECT_TRUE(ok(store.load())) << err;
}

TEST_F(MaterialStoreTest, AKeyTheGroupMayWriteIsRefused) {
  chmod(key.c_str(), 0620);
  EXPECT_FALSE(ok(store.load()));
  expect_one_line_naming(err, key);
}

TEST_F(MaterialStoreTest, AMissingFileIsNamed) {
  unlink(cert.c_str());
  EXPECT_FALSE(ok(store.load()));
  EXPECT_EQ(err, "cannot read " + cert + ": No such file or directory");
}

TEST_F(MaterialStoreTest, AReloadThatCannotReadAFileKeepsTheGoodMaterial) {
  ASSERT_TRUE(ok(store.load())) << err;
  chmod(key.c_str(), 0604);
  EXPECT_FALSE(ok(store.propose()));
  expect_one_line_naming(err, key);
  EXPECT_FALSE(store.pending());
  EXPECT_EQ(store.good().key_pem, "key-1");
}

class PinFileTest : public MaterialStoreTest {
 protected:
  std::string pins_path = dir.write("bridge.pin", "", 0644);
  MaterialStore pinned{{cert, key, ca, "", "", pins_path, {}, "bridge-pin", "", "", {}},
                       [](const Material&) -> Result<void> { return {}; }};
};

TEST_F(PinFileTest, PinFileLinesAreReadSkippingCommentsAndBlanks) {
  dir.write("bridge.pin", std::string("# rotated 2026-11\n\n  ") + kPin + " \r\n", 0644);
  ASSERT_TRUE(ok(pinned.load())) << err;
  EXPECT_EQ(pinned.good().pins.size(), 1u);
}

TEST_F(PinFileTest, ABadPinLineIsNamedByFileAndLine) {
  dir.write("bridge.pin", std::string(kPin) + "\nsha256//short\n", 0644);
  EXPECT_FALSE(ok(pinned.load()));
  EXPECT_EQ(err, pins_path + ":2: not a pin (expected sha256//<base64 of 32 bytes>)");
}

TEST_F(PinFileTest, APinFileWithoutAPinIsRefused) {
  dir.write("bridge.pin", "# being rewritten\n", 0644);
  EXPECT_FALSE(ok(pinned.load()));
  expect_one_line_naming(err, pins_path);
  EXPECT_NE(err.find("no pin in the file"), std::string::npos) << err;
}

TEST(MaterialStore, TheWatchedPathsAreTheOnesGiven) {
  const MaterialFiles files{"c", "k", "a", "", "", "p", {}, "broker-pin", "", "", {}};
  EXPECT_EQ(files.paths(), (std::vector<std::string>{"c", "k", "a", "p"}));
  // The bridge's --vault-ca is watched (and re-read) like the others.
  const MaterialFiles bridge{"c", "k", "a", "", "", "", {}, "broker-pin", "v", "", {}};
  EXPECT_EQ(bridge.paths(), (std::vector<std::string>{"c", "k", "a", "v"}));
}

TEST_F(MaterialStoreTest, TheVaultCaIsReadWithTheRestAndAMissingOneIsNamed) {
  const std::string vault_ca = dir.write("vault-ca.crt", "vault-ca-1", 0644);
  MaterialStore with{{cert, key, ca, "", "", "", {}, "broker-pin", vault_ca, "", {}},
                     [](const Material&) -> Result<void> { return {}; }};
  ASSERT_TRUE(ok(with.load())) << err;
  EXPECT_EQ(with.good().upstream_ca_pem, "vault-ca-1");
  dir.write("vault-ca.crt", "vault-ca-2", 0644);
  ASSERT_TRUE(ok(with.propose())) << err;
  EXPECT_EQ(with.candidate().upstream_ca_pem, "vault-ca-2");
  MaterialStore missing{{cert, key, ca, "", "", "", {}, "broker-pin", vault_ca + ".gone", "", {}},
                        [](const Material&) -> Result<void> { return {}; }};
  EXPECT_FALSE(ok(missing.load()));
  EXPECT_NE(err.find(vault_ca + ".gone"), std::string::npos) << err;
}

}  // namespace
}  // namespace ct
