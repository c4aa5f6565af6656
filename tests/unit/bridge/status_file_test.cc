#include "bridge/status_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace ct::bridge {
namespace {

class StatusFileTest : public ::testing::Test {
 protected:
  StatusFileTest() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ct-status-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    dir_ = tmpl;
    path_ = dir_ + "/bridge.prom";
  }
  ~StatusFileTest() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string text() const {
    std::ifstream f(path_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  bool has_line(const std::string& line) const {
    return ("\n" + text()).find("\n" + line + "\n") != std::string::npos;
  }

  std::string dir_, path_;
  StatusFile sf_;
  std::string err_;
  // Keeps the error text where the assertions read it.
  bool ok(const Result<void>& r) {
    err_ = r ? std::string() : r.what();
    return r.ok();
  }
};

TEST_F(StatusFileTest, OpenWritesTheFileWithNoLinkReadableByTheCollector) {
  const mode_t old = umask(077);  // the systemd unit's
  ASSERT_TRUE(ok(sf_.open(path_, 100.0))) << err_;
  umask(old);
  EXPECT_TRUE(has_line("cloudtaser_bridge_link_up 0")) << text();
  EXPECT_TRUE(has_line("cloudtaser_bridge_start_time_seconds 100.000")) << text();
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
}

TEST_F(StatusFileTest, AnEmptyOrUnwritablePathIsAStartUpError) {
  EXPECT_FALSE(ok(sf_.open("", 100.0)));
  EXPECT_EQ(err_, "empty path");
  StatusFile other;
  EXPECT_FALSE(ok(other.open(dir_ + "/no/such/dir/bridge.prom", 100.0)));
  EXPECT_EQ(err_.rfind("cannot write " + dir_ + "/no/such/dir/bridge.prom.tmp: ", 0), 0u) << err_;
}

TEST_F(StatusFileTest, TheFileIsRewrittenOnlyWhenTheLinksUpMove) {
  ASSERT_TRUE(ok(sf_.open(path_, 100.0))) << err_;
  sf_.links(2, 105.0);
  EXPECT_TRUE(has_line("cloudtaser_bridge_link_up 1")) << text();
  EXPECT_TRUE(has_line("cloudtaser_bridge_links_up 2")) << text();
  EXPECT_TRUE(has_line("cloudtaser_bridge_last_change_timestamp_seconds 105.000")) << text();
  sf_.links(2, 110.0);  // no change: the time of the last change stays
  EXPECT_TRUE(has_line("cloudtaser_bridge_last_change_timestamp_seconds 105.000")) << text();
  sf_.links(0, 120.0);
  EXPECT_TRUE(has_line("cloudtaser_bridge_link_up 0")) << text();
  EXPECT_TRUE(has_line("cloudtaser_bridge_last_change_timestamp_seconds 120.000")) << text();
}

TEST_F(StatusFileTest, ReplicasExpectedAndLinkedWithOneLineForEachInstance) {
  ASSERT_TRUE(ok(sf_.open(path_, 100.0))) << err_;
  EXPECT_TRUE(has_line("cloudtaser_bridge_broker_replicas_expected 0")) << text();
  sf_.links(1, 105.0, Replicas{3, {"0123456789abcdef"}});
  EXPECT_TRUE(has_line("cloudtaser_bridge_broker_replicas_expected 3")) << text();
  EXPECT_TRUE(has_line("cloudtaser_bridge_broker_replicas_linked 1")) << text();
  // Another instance with the same count of links (one replaced another):
  // rewritten, but the link count did not move, so neither does its time.
  sf_.links(1, 110.0, Replicas{3, {"fedcba9876543210"}});
  EXPECT_TRUE(has_line("cloudtaser_bridge_broker_instance_linked{instance=\"fedcba9876543210\"} 1"))
      << text();
  EXPECT_FALSE(
      has_line("cloudtaser_bridge_broker_instance_linked{instance=\"0123456789abcdef\"} 1"))
      << text();
  EXPECT_TRUE(has_line("cloudtaser_bridge_last_change_timestamp_seconds 105.000")) << text();
  sf_.links(3, 111.0, Replicas{3, {"0123456789abcdef", "1111111111111111", "fedcba9876543210"}});
  EXPECT_TRUE(has_line("cloudtaser_bridge_broker_replicas_linked 3")) << text();
}

TEST_F(StatusFileTest, OpenBaosStateIsOneSeriesPerStateWithOnlyTheCurrentOneAtOne) {
  ASSERT_TRUE(ok(sf_.open(path_, 100.0))) << err_;
  EXPECT_TRUE(has_line("cloudtaser_bridge_vault_state{state=\"unknown\"} 1")) << text();
  EXPECT_TRUE(has_line("cloudtaser_bridge_vault_state{state=\"sealed\"} 0")) << text();
  sf_.links(1, 105.0, Replicas{1, {"0123456789abcdef"}}, UpstreamState::kActive);
  sf_.links(1, 107.0, Replicas{1, {"0123456789abcdef"}}, UpstreamState::kSealed);
  // Only the state moved: rewritten, and the link's time of change stays.
  EXPECT_TRUE(has_line("cloudtaser_bridge_vault_state{state=\"sealed\"} 1")) << text();
  EXPECT_TRUE(has_line("cloudtaser_bridge_last_change_timestamp_seconds 105.000")) << text();
  const std::string t = text();
  size_t series = 0, ones = 0;
  for (size_t at = t.find("\ncloudtaser_bridge_vault_state{"); at != std::string::npos;
       at = t.find("\ncloudtaser_bridge_vault_state{", at + 1)) {
    series++;
    if (t.compare(t.find('\n', at + 1) - 2, 2, " 1") == 0) ones++;
  }
  EXPECT_EQ(series, size_t{kUpstreamStates}) << t;
  EXPECT_EQ(ones, 1u) << t;
  for (const char* st :
       {"unknown", "active", "standby", "perf_standby", "uninitialized", "unreachable"})
    EXPECT_TRUE(has_line(std::string("cloudtaser_bridge_vault_state{state=\"") + st + "\"} 0"))
        << st << "\n"
        << t;
}

TEST_F(StatusFileTest, ARestartedChildsDroppedLinesAddToItsPredecessors) {
  ASSERT_TRUE(ok(sf_.open(path_, 100.0))) << err_;
  sf_.child_log_dropped(Supervisor::kTls, 5);
  sf_.child_log_dropped(Supervisor::kTls, 8);
  EXPECT_EQ(sf_.dropped().tls, 8u);
  sf_.child_exited(Supervisor::kTls);
  sf_.child_log_dropped(Supervisor::kTls, 9);  // the successor's own count, from 0
  EXPECT_EQ(sf_.dropped().tls, 17u);
  // A count that went down without an exit seen first is a restart too.
  sf_.child_log_dropped(Supervisor::kTls, 1);
  EXPECT_EQ(sf_.dropped().tls, 18u);
  sf_.child_log_dropped(Supervisor::kForward, 3);
  EXPECT_TRUE(has_line("cloudtaser_bridge_log_lines_dropped_total{process=\"tls\"} 18")) << text();
  EXPECT_TRUE(has_line("cloudtaser_bridge_log_lines_dropped_total{process=\"forward\"} 3"))
      << text();
}

TEST_F(StatusFileTest, WithoutAPathNothingIsWrittenButTheCountsGoOn) {
  sf_.links(1, 105.0);
  sf_.child_log_dropped(Supervisor::kForward, 4);
  EXPECT_FALSE(sf_.enabled());
  EXPECT_EQ(sf_.dropped().forward, 4u);
  EXPECT_FALSE(std::filesystem::exists(path_));
}

}  // namespace
}  // namespace ct::bridge
