#include "shared/parent/file_watcher.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>

#include "tests/unit/parent/temp_dir.h"

namespace ct {
namespace {

using std::chrono::seconds;

constexpr auto kPeriod = seconds(2);
// A fake clock: the watcher only compares the times it is given.
const TimePoint t0 = TimePoint(std::chrono::hours(1));

TEST(FileWatcher, UnchangedFilesNeverTrigger) {
  test::TempDir dir;
  FileWatcher w({dir.write("tls.crt", "cert-1"), dir.write("tls.key", "key-1")}, kPeriod);
  w.start(t0);
  for (int i = 1; i <= 5; i++) EXPECT_FALSE(w.changed(t0 + i * kPeriod)) << i;
}

// One certificate file, watched since t0.
class WatchedFile : public ::testing::Test {
 protected:
  WatchedFile() { w.start(t0); }
  test::TempDir dir;
  std::string cert = dir.write("tls.crt", "cert-1");
  FileWatcher w{{cert}, kPeriod};
};

TEST_F(WatchedFile, ARewriteInPlaceTriggersAtTheNextLook) {
  dir.write("tls.crt", "cert-2 is longer");
  EXPECT_FALSE(w.changed(t0 + seconds(1)));  // not due yet: no look
  EXPECT_TRUE(w.changed(t0 + kPeriod));
  EXPECT_EQ(w.deadline(), t0 + 2 * kPeriod);
}

TEST_F(WatchedFile, ARewriteKeepsTriggeringUntilAReloadRecordsIt) {
  dir.write("tls.crt", "cert-2 is longer");
  ASSERT_TRUE(w.changed(t0 + kPeriod));
  // A reload that could not run (the TLS process restarting) records nothing.
  EXPECT_TRUE(w.changed(t0 + 2 * kPeriod));
  w.record(w.stamp());
  EXPECT_FALSE(w.changed(t0 + 3 * kPeriod));
}

// A Kubernetes Secret volume: each file is a symlink through "..data", which
// the kubelet swaps atomically to a new timestamped directory.
TEST(FileWatcher, ASecretsSymlinkSwapTriggers) {
  test::TempDir dir;
  ASSERT_EQ(mkdir(dir.path("..2026_12_01_a").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(dir.path("..2026_12_01_b").c_str(), 0755), 0);
  dir.write("..2026_12_01_a/tls.crt", "cert-1");
  dir.write("..2026_12_01_b/tls.crt", "cert-2");  // the same size
  ASSERT_EQ(symlink("..2026_12_01_a", dir.path("..data").c_str()), 0);
  ASSERT_EQ(symlink("..data/tls.crt", dir.path("tls.crt").c_str()), 0);
  FileWatcher w({dir.path("tls.crt")}, kPeriod);
  w.start(t0);
  EXPECT_FALSE(w.changed(t0 + kPeriod));
  ASSERT_EQ(symlink("..2026_12_01_b", dir.path("..data_tmp").c_str()), 0);
  ASSERT_EQ(rename(dir.path("..data_tmp").c_str(), dir.path("..data").c_str()), 0);
  EXPECT_TRUE(w.changed(t0 + 2 * kPeriod));
}

TEST_F(WatchedFile, AFileThatGoesAndComesBackTriggersBothTimes) {
  ASSERT_EQ(unlink(cert.c_str()), 0);
  EXPECT_TRUE(w.changed(t0 + kPeriod));
  w.record(w.stamp());
  dir.write("tls.crt", "cert-1, longer");
  EXPECT_TRUE(w.changed(t0 + 2 * kPeriod));
}

TEST(FileWatcher, NoLookIsDueBeforeStart) {
  test::TempDir dir;
  FileWatcher w({dir.write("tls.crt", "cert-1")}, kPeriod);
  EXPECT_EQ(w.deadline(), TimePoint::max());
}

}  // namespace
}  // namespace ct
