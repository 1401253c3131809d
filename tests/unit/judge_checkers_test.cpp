#include <gtest/gtest.h>

#include "judge/checkers.h"

namespace cutor::judge {
namespace {

CheckerSpec Spec(CheckerType type) {
  CheckerSpec spec;
  spec.type = type;
  return spec;
}

TEST(JudgeCheckers, ExactComparesBytes) {
  const auto spec = Spec(CheckerType::kExact);
  EXPECT_TRUE(Check(spec, "3\n", "3\n").accepted);
  EXPECT_TRUE(Check(spec, "", "").accepted);
  const auto trailing = Check(spec, "3\n", "3 \n");
  EXPECT_FALSE(trailing.accepted);
  EXPECT_EQ(trailing.message, "output differs at byte 1 (expected 2 bytes, got 3)");
  EXPECT_FALSE(Check(spec, "3\n", "3").accepted);
  EXPECT_FALSE(Check(spec, "", "x").accepted);
}

TEST(JudgeCheckers, LinesIgnoreTrailingSpaceAndBlankLines) {
  const auto spec = Spec(CheckerType::kLines);
  EXPECT_TRUE(Check(spec, "1 2\n3\n", "1 2   \n3\t\r\n\n\n").accepted);
  EXPECT_TRUE(Check(spec, "a", "a\n").accepted);
  EXPECT_TRUE(Check(spec, "", "").accepted);
  EXPECT_TRUE(Check(spec, "", "\n \n").accepted);
  // Leading space and inner space count.
  EXPECT_FALSE(Check(spec, "1 2\n", " 1 2\n").accepted);
  EXPECT_FALSE(Check(spec, "1 2\n", "1  2\n").accepted);
  // A blank line in the middle counts.
  EXPECT_FALSE(Check(spec, "a\nb\n", "a\n\nb\n").accepted);
  const auto missing = Check(spec, "a\nb\n", "a\n");
  EXPECT_FALSE(missing.accepted);
  EXPECT_EQ(missing.message, "expected 2 lines, got 1");
  const auto differs = Check(spec, "a\nb\n", "a\nc\n");
  EXPECT_EQ(differs.message, "line 2: expected 'b', got 'c'");
  EXPECT_FALSE(Check(spec, "x\n", "").accepted);
}

TEST(JudgeCheckers, TokensIgnoreAllWhitespace) {
  const auto spec = Spec(CheckerType::kTokens);
  EXPECT_TRUE(Check(spec, "1 2\n3\n", "  1\n\n2\t3").accepted);
  EXPECT_TRUE(Check(spec, "", " \n\t").accepted);
  EXPECT_FALSE(Check(spec, "1 2", "12").accepted);
  EXPECT_FALSE(Check(spec, "1.0", "1").accepted);  // tokens are text, not numbers
  EXPECT_EQ(Check(spec, "1 2", "1").message, "expected 2 tokens, got 1");
  EXPECT_EQ(Check(spec, "1 2", "1 3").message, "token 2: expected '2', got '3'");
}

TEST(JudgeCheckers, FloatToleranceAndSignedZero) {
  auto spec = Spec(CheckerType::kFloat);  // defaults: abs 1e-9, rel 1e-9
  EXPECT_TRUE(Check(spec, "0.0", "-0.0").accepted);
  EXPECT_TRUE(Check(spec, "-0", "0.000").accepted);
  EXPECT_TRUE(Check(spec, "1", "1.000000001").accepted);       // exactly 1e-9 away
  EXPECT_FALSE(Check(spec, "1", "1.000000003").accepted);      // 3e-9 away
  EXPECT_TRUE(Check(spec, "1e12", "1000000000001").accepted);  // 1 away, rel 1e-12
  EXPECT_FALSE(Check(spec, "1e12", "1000000010000").accepted);
  EXPECT_TRUE(Check(spec, "3.14 yes", "3.140000000 yes\n").accepted);
  EXPECT_FALSE(Check(spec, "3.14 yes", "3.14 no").accepted);  // words compare exactly
  EXPECT_FALSE(Check(spec, "1", "1x").accepted);              // not a number: text
  EXPECT_TRUE(Check(spec, "nan", "NaN").accepted);
  EXPECT_FALSE(Check(spec, "inf", "-inf").accepted);
  EXPECT_FALSE(Check(spec, "1", "nan").accepted);
  EXPECT_TRUE(Check(spec, "", "").accepted);
  EXPECT_FALSE(Check(spec, "0", "").accepted);

  spec.abs_tolerance = 0.5;
  spec.rel_tolerance = 0;
  EXPECT_TRUE(Check(spec, "10", "10.5").accepted);
  EXPECT_FALSE(Check(spec, "10", "10.6").accepted);
  spec.abs_tolerance = 0;
  spec.rel_tolerance = 0.1;
  EXPECT_TRUE(Check(spec, "10", "11").accepted);
  EXPECT_FALSE(Check(spec, "10", "11.1").accepted);
}

TEST(JudgeCheckers, TypeNamesRoundTrip) {
  CheckerType type{};
  for (auto name : {"exact", "lines", "tokens", "float"}) {
    ASSERT_TRUE(ParseCheckerType(name, type)) << name;
    EXPECT_EQ(CheckerTypeName(type), name);
  }
  EXPECT_FALSE(ParseCheckerType("script", type));  // not built in: runs in a sandbox
  EXPECT_FALSE(ParseCheckerType("Lines", type));
  EXPECT_FALSE(ParseCheckerType("", type));
}

}  // namespace
}  // namespace cutor::judge
