// Command-line flags (flags.h), whole-second durations and host:port parsing
// (net.h): the forms that work and one error line for each that does not.
#include "shared/os/flags.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "shared/os/net.h"

namespace ct {
namespace {

std::vector<FlagSpec> specs() {
  return {
      {"listen", "ADDR", "address to listen on", false},
      {"pin", "PIN", "accepted peer pin", true},
      {"verbose", "", "log more", false},
  };
}

// Parses argv = {"prog", args...}; returns whether it parsed.
struct Parsed {
  Flags flags{specs()};
  bool ok = false;
  std::string err;
};
Parsed parse(std::vector<std::string> args) {
  Parsed p;
  args.insert(args.begin(), "prog");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const Result<void> st = p.flags.parse(static_cast<int>(args.size()), argv.data());
  p.ok = st.ok();
  if (!st) p.err = st.what();
  return p;
}

TEST(Flags, SeparateValue) {
  auto p = parse({"--listen", "0.0.0.0:8443"});
  ASSERT_TRUE(p.ok) << p.err;
  EXPECT_TRUE(p.flags.has("listen"));
  EXPECT_EQ(p.flags.get("listen"), "0.0.0.0:8443");
  EXPECT_FALSE(p.flags.has("pin"));
  EXPECT_FALSE(p.flags.has("verbose"));
}

TEST(Flags, InlineValue) {
  auto p = parse({"--listen=[::1]:8443"});
  ASSERT_TRUE(p.ok) << p.err;
  EXPECT_EQ(p.flags.get("listen"), "[::1]:8443");
  // Only the first '=' splits: the value may contain more.
  auto q = parse({"--pin=sha256//AAAA="});
  ASSERT_TRUE(q.ok) << q.err;
  EXPECT_EQ(q.flags.get("pin"), "sha256//AAAA=");
}

TEST(Flags, NoArguments) {
  auto p = parse({});
  ASSERT_TRUE(p.ok);
  EXPECT_FALSE(p.flags.has("listen"));
  EXPECT_EQ(p.flags.get("listen", "default"), "default");
  EXPECT_TRUE(p.flags.all("pin").empty());
}

TEST(Flags, Switch) {
  auto p = parse({"--verbose"});
  ASSERT_TRUE(p.ok) << p.err;
  EXPECT_TRUE(p.flags.has("verbose"));
  auto q = parse({"--verbose=yes"});
  EXPECT_FALSE(q.ok);
  EXPECT_NE(q.err.find("--verbose"), std::string::npos) << q.err;
  // A switch does not swallow the next word.
  auto r = parse({"--verbose", "extra"});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.err.find("extra"), std::string::npos) << r.err;
}

TEST(Flags, UnknownFlag) {
  for (auto args : std::vector<std::vector<std::string>>{
           {"--nope"}, {"--nope=1"}, {"--listen", "a:1", "--nope", "x"}, {"--Listen", "a:1"}}) {
    auto p = parse(args);
    EXPECT_FALSE(p.ok);
    EXPECT_NE(p.err.find("unknown flag --"), std::string::npos) << p.err;
    EXPECT_EQ(p.err.find('\n'), std::string::npos) << "one line";
  }
}

TEST(Flags, NotAFlag) {
  for (auto args : std::vector<std::vector<std::string>>{{"listen"}, {"-l"}, {"--"}, {"-"}, {""}}) {
    auto p = parse(args);
    EXPECT_FALSE(p.ok) << args[0];
    EXPECT_FALSE(p.err.empty());
  }
}

TEST(Flags, MissingValue) {
  auto p = parse({"--listen"});
  EXPECT_FALSE(p.ok);
  EXPECT_NE(p.err.find("--listen"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("ADDR"), std::string::npos) << p.err;
  auto q = parse({"--listen="});
  EXPECT_FALSE(q.ok);
  EXPECT_NE(q.err.find("--listen"), std::string::npos) << q.err;
  auto r = parse({"--listen", ""});
  EXPECT_FALSE(r.ok);
}

TEST(Flags, RepeatOfANonRepeatableFlag) {
  auto p = parse({"--listen", "a:1", "--listen=b:2"});
  EXPECT_FALSE(p.ok);
  EXPECT_NE(p.err.find("--listen"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("more than once"), std::string::npos) << p.err;
  auto q = parse({"--verbose", "--verbose"});
  EXPECT_FALSE(q.ok);
}

TEST(Flags, RepeatableFlagKeepsEveryValueInOrder) {
  auto p = parse({"--pin", "one", "--listen", "a:1", "--pin=two", "--pin", "three"});
  ASSERT_TRUE(p.ok) << p.err;
  EXPECT_EQ(p.flags.all("pin"), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(p.flags.get("pin"), "three");
  EXPECT_EQ(p.flags.get("listen"), "a:1");
}

TEST(Flags, Usage) {
  Flags f(specs());
  const std::string u = f.usage("cloudtaser-broker", "Runs the broker.");
  EXPECT_NE(u.find("usage: cloudtaser-broker"), std::string::npos);
  EXPECT_NE(u.find("Runs the broker."), std::string::npos);
  EXPECT_NE(u.find("--listen ADDR"), std::string::npos);
  EXPECT_NE(u.find("accepted peer pin (repeatable)"), std::string::npos);
  EXPECT_NE(u.find("--verbose"), std::string::npos);
}

// ------------------------------------------------------------------ parse_seconds

TEST(ParseSeconds, Accepts) {
  EXPECT_EQ(parse_seconds("1", 60), 1u);
  EXPECT_EQ(parse_seconds("10", 60), 10u);
  EXPECT_EQ(parse_seconds("60", 60), 60u);
  EXPECT_EQ(parse_seconds("007", 60), 7u);
}

TEST(ParseSeconds, Rejects) {
  for (const char* s : {"", "0", "61", "-1", "+1", " 1", "1 ", "1s", "1.5", "0x10", "abc",
                        "99999999999999999999"}) {
    EXPECT_FALSE(parse_seconds(s, 60).has_value()) << "'" << s << "'";
  }
  EXPECT_FALSE(parse_seconds("4294967295", 4294967294u).has_value());
  EXPECT_EQ(parse_seconds("4294967295", 4294967295u), 4294967295u);
}

// ------------------------------------------------------------------ parse_host_port

TEST(ParseHostPort, Forms) {
  struct Case {
    const char* in;
    const char* host;
    uint16_t port;
  };
  for (const Case& c :
       {Case{"127.0.0.1:8200", "127.0.0.1", 8200}, Case{"[::1]:8443", "::1", 8443},
        Case{"[2001:db8::5]:1", "2001:db8::5", 1},
        Case{"broker.example.com:65535", "broker.example.com", 65535}, Case{"h:01", "h", 1}}) {
    auto hp = parse_host_port(c.in);
    ASSERT_TRUE(hp.ok()) << c.in << ": " << hp.what();
    EXPECT_EQ(hp->host, c.host);
    EXPECT_EQ(hp->port, c.port);
  }
}

TEST(ParseHostPort, Rejects) {
  for (const char* s : {"", "host", "host:", ":80", "host:0", "host:65536", "host:99999999999",
                        "host:-1", "host:+1", "host:80x", "host: 80", "::1:8200", "[::1]",
                        "[::1]:", "[::1]8200", "[::1", "[]:80", "a:b:80"}) {
    auto hp = parse_host_port(s);
    ASSERT_FALSE(hp.ok()) << "'" << s << "'";
    EXPECT_FALSE(hp.what().empty()) << "'" << s << "'";
  }
}

TEST(NumericAddr, FamiliesAndString) {
  auto v4 = numeric_addr({"127.0.0.1", 8200});
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->family(), AF_INET);
  EXPECT_EQ(v4->len, sizeof(sockaddr_in));
  EXPECT_EQ(v4->str(), "127.0.0.1:8200");
  auto v6 = numeric_addr({"::1", 8443});
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->family(), AF_INET6);
  EXPECT_EQ(v6->str(), "[::1]:8443");
  EXPECT_FALSE(numeric_addr({"localhost", 80}).has_value());  // never a name lookup
  EXPECT_FALSE(numeric_addr({"256.0.0.1", 80}).has_value());
}

}  // namespace
}  // namespace ct
