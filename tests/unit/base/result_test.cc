// Result<void> and Result<T>: success and failure, the errno kept beside the text,
// a move-only value moved out, and reading the wrong side aborting.
#include "shared/base/result.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "shared/base/unique_fd.h"

namespace ct {
namespace {

Result<void> check_positive(int x) {
  if (x <= 0) return fail("not positive: " + std::to_string(x));
  return {};
}

Result<int> half(int x) {
  if (x % 2 != 0) return fail_errno(EINVAL, "odd");
  return x / 2;
}

Result<UniqueFd> open_null(bool ok) {
  if (!ok) return fail_errno(ENOENT, "");
  return UniqueFd(::dup(0));
}

TEST(Result, VoidSuccessAndFailure) {
  EXPECT_TRUE(check_positive(1).ok());
  const Result<void> s = check_positive(-2);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.what(), "not positive: -2");
  EXPECT_EQ(s.error().code, 0);
}

TEST(Result, ValueOrErrorWithErrno) {
  auto r = half(8);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 4);
  auto e = half(7);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, EINVAL);
  EXPECT_EQ(e.what(), std::string("odd: ") + std::strerror(EINVAL));
  EXPECT_FALSE(e.status().ok());
  EXPECT_EQ(e.status().what(), e.what());
  EXPECT_TRUE(r.status().ok());
}

TEST(Result, MoveOnlyValueMovesOut) {
  auto r = open_null(true);
  ASSERT_TRUE(r);
  UniqueFd fd = std::move(r).value();
  EXPECT_TRUE(fd.valid());
  auto e = open_null(false);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.what(), std::strerror(ENOENT)) << "no prefix: the errno text alone";
  auto p = Result<std::unique_ptr<int>>(std::make_unique<int>(5));
  EXPECT_EQ(**p, 5);
}

TEST(ResultDeathTest, ReadingTheWrongSideAborts) {
  EXPECT_DEATH((void)half(3).value(), "check failed");
  EXPECT_DEATH((void)half(4).error(), "check failed");
  EXPECT_DEATH((void)check_positive(1).error(), "check failed");
}

}  // namespace
}  // namespace ct
