#include <gtest/gtest.h>

#include "runtimes/runtime.h"
#include "runtimes/semver.h"

namespace cutor {
namespace {

bool in(const char* version, const char* range) {
  auto r = version_in_range(*parse_version(version), range);
  EXPECT_TRUE(r.has_value()) << range << ": " << r.error();
  return r.value_or(false);
}

TEST(Semver, RangesMatchLikeNpm) {
  EXPECT_TRUE(in("3.11.2", "*"));
  EXPECT_TRUE(in("3.11.2", ""));
  EXPECT_TRUE(in("3.11.2", "3"));
  EXPECT_TRUE(in("3.11.2", "3.x"));
  EXPECT_TRUE(in("3.11.2", "3.11"));
  EXPECT_FALSE(in("3.11.2", "3.10"));
  EXPECT_TRUE(in("3.11.2", "3.11.2"));
  EXPECT_FALSE(in("3.11.2", "3.11.1"));
  EXPECT_TRUE(in("3.11.2", "^3.10"));
  EXPECT_FALSE(in("4.0.0", "^3.10"));
  EXPECT_TRUE(in("0.2.5", "^0.2.1"));
  EXPECT_FALSE(in("0.3.0", "^0.2.1"));
  EXPECT_TRUE(in("1.2.9", "~1.2.3"));
  EXPECT_FALSE(in("1.3.0", "~1.2.3"));
  EXPECT_TRUE(in("3.9.0", ">=3.9 <4"));
  EXPECT_FALSE(in("4.0.0", ">=3.9 <4"));
  EXPECT_TRUE(in("3.11.2", "<=3.11"));
  EXPECT_FALSE(in("3.11.2", ">3.11"));
  EXPECT_TRUE(in("2.5.0", "1.x || 2.x"));
  EXPECT_FALSE(in("3.0.0", "1.x || 2.x"));
}

TEST(Semver, IllFormedRangesAndVersionsAreRefused) {
  const Version v = *parse_version("1.2.3");
  EXPECT_FALSE(version_in_range(v, ">>3").has_value());
  EXPECT_FALSE(version_in_range(v, "1.2.3.4").has_value());
  EXPECT_FALSE(version_in_range(v, "a.b").has_value());
  EXPECT_FALSE(parse_version("1.2").has_value());
  EXPECT_FALSE(parse_version("1.2.x").has_value());
}

TEST(Catalogue, PicksTheHighestMatchingVersionByNameOrAlias) {
  std::vector<Runtime> rs = {{.name = "python", .version = "3.9.1", .aliases = {"py"}},
                             {.name = "python", .version = "3.11.2", .aliases = {"py"}},
                             {.name = "python", .version = "2.7.18", .aliases = {"py"}}};
  EXPECT_EQ((*find_runtime(rs, "py", "*"))->version, "3.11.2");
  EXPECT_EQ((*find_runtime(rs, "python", "<3.10"))->version, "3.9.1");
  EXPECT_EQ((*find_runtime(rs, "python", "2"))->version, "2.7.18");
  EXPECT_EQ(*find_runtime(rs, "python", "4"), nullptr);
  EXPECT_EQ(*find_runtime(rs, "ruby", "*"), nullptr);
  EXPECT_FALSE(find_runtime(rs, "python", "~>1").has_value());
}

TEST(Catalogue, ShippedFoldersLoad) {
  for (const char* dir : {CUTOR_DEFAULT_RUNTIMES_DIR}) {
    const auto rs = load_runtime_folder(dir);
    EXPECT_EQ(rs.size(), 9u) << dir;
    // Judge0's multi-file program runs the scripts of its zip with the box's own shell.
    for (const auto& r : rs) EXPECT_EQ(r.nix.has_value(), r.name != "multi-file") << r.name;
  }
}

}  // namespace
}  // namespace cutor
