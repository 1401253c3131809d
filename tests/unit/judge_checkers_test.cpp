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
  EXPECT_TRUE(check_output(spec, "3\n", "3\n").accepted);
  EXPECT_TRUE(check_output(spec, "", "").accepted);
  const auto trailing = check_output(spec, "3\n", "3 \n");
  EXPECT_FALSE(trailing.accepted);
  EXPECT_EQ(trailing.message, "output differs at byte 1 (expected 2 bytes, got 3)");
  EXPECT_FALSE(check_output(spec, "3\n", "3").accepted);
  EXPECT_FALSE(check_output(spec, "", "x").accepted);
}

TEST(JudgeCheckers, LinesIgnoreTrailingSpaceAndBlankLines) {
  const auto spec = Spec(CheckerType::kLines);
  EXPECT_TRUE(check_output(spec, "1 2\n3\n", "1 2   \n3\t\r\n\n\n").accepted);
  EXPECT_TRUE(check_output(spec, "a", "a\n").accepted);
  EXPECT_TRUE(check_output(spec, "", "").accepted);
  EXPECT_TRUE(check_output(spec, "", "\n \n").accepted);
  // Leading space and inner space count.
  EXPECT_FALSE(check_output(spec, "1 2\n", " 1 2\n").accepted);
  EXPECT_FALSE(check_output(spec, "1 2\n", "1  2\n").accepted);
  // A blank line in the middle counts.
  EXPECT_FALSE(check_output(spec, "a\nb\n", "a\n\nb\n").accepted);
  const auto missing = check_output(spec, "a\nb\n", "a\n");
  EXPECT_FALSE(missing.accepted);
  EXPECT_EQ(missing.message, "expected 2 lines, got 1");
  const auto differs = check_output(spec, "a\nb\n", "a\nc\n");
  EXPECT_EQ(differs.message, "line 2: expected 'b', got 'c'");
  EXPECT_FALSE(check_output(spec, "x\n", "").accepted);
}

TEST(JudgeCheckers, TokensIgnoreAllWhitespace) {
  const auto spec = Spec(CheckerType::kTokens);
  EXPECT_TRUE(check_output(spec, "1 2\n3\n", "  1\n\n2\t3").accepted);
  EXPECT_TRUE(check_output(spec, "", " \n\t").accepted);
  EXPECT_FALSE(check_output(spec, "1 2", "12").accepted);
  EXPECT_FALSE(check_output(spec, "1.0", "1").accepted);  // tokens are text, not numbers
  EXPECT_EQ(check_output(spec, "1 2", "1").message, "expected 2 tokens, got 1");
  EXPECT_EQ(check_output(spec, "1 2", "1 3").message, "token 2: expected '2', got '3'");
}

TEST(JudgeCheckers, FloatToleranceAndSignedZero) {
  auto spec = Spec(CheckerType::kFloat);  // defaults: abs 1e-9, rel 1e-9
  EXPECT_TRUE(check_output(spec, "0.0", "-0.0").accepted);
  EXPECT_TRUE(check_output(spec, "-0", "0.000").accepted);
  EXPECT_TRUE(check_output(spec, "1", "1.000000001").accepted);       // exactly 1e-9 away
  EXPECT_FALSE(check_output(spec, "1", "1.000000003").accepted);      // 3e-9 away
  EXPECT_TRUE(check_output(spec, "1e12", "1000000000001").accepted);  // 1 away, rel 1e-12
  EXPECT_FALSE(check_output(spec, "1e12", "1000000010000").accepted);
  EXPECT_TRUE(check_output(spec, "3.14 yes", "3.140000000 yes\n").accepted);
  EXPECT_FALSE(check_output(spec, "3.14 yes", "3.14 no").accepted);  // words compare exactly
  EXPECT_FALSE(check_output(spec, "1", "1x").accepted);              // not a number: text
  EXPECT_TRUE(check_output(spec, "nan", "NaN").accepted);
  EXPECT_FALSE(check_output(spec, "inf", "-inf").accepted);
  EXPECT_FALSE(check_output(spec, "1", "nan").accepted);
  EXPECT_TRUE(check_output(spec, "", "").accepted);
  EXPECT_FALSE(check_output(spec, "0", "").accepted);

  spec.abs_tolerance = 0.5;
  spec.rel_tolerance = 0;
  EXPECT_TRUE(check_output(spec, "10", "10.5").accepted);
  EXPECT_FALSE(check_output(spec, "10", "10.6").accepted);
  spec.abs_tolerance = 0;
  spec.rel_tolerance = 0.1;
  EXPECT_TRUE(check_output(spec, "10", "11").accepted);
  EXPECT_FALSE(check_output(spec, "10", "11.1").accepted);
}

TEST(JudgeCheckers, TypeNamesRoundTrip) {
  for (auto name : {"exact", "lines", "tokens", "float", "script"}) {
    std::optional<CheckerType> type = parse_checker_type(name);
    ASSERT_TRUE(type) << name;
    EXPECT_EQ(checker_type_name(*type), name);
  }
  EXPECT_FALSE(parse_checker_type("Lines"));
  EXPECT_FALSE(parse_checker_type(""));
}

TEST(JudgeCheckers, ScriptIsNotAComparison) {
  CheckerSpec spec;
  spec.type = CheckerType::kScript;
  EXPECT_FALSE(check_output(spec, "", "").accepted);
}

TEST(JudgeVerdicts, FromRunsAndToResults) {
  StageResult run;
  run.status = StageStatus::kOk;
  EXPECT_EQ(verdict_of_run(run), Verdict::kAccepted);
  run.status = StageStatus::kSignaled;
  EXPECT_EQ(verdict_of_run(run), Verdict::kRuntimeError);
  run.status = StageStatus::kWallTimeLimitExceeded;
  EXPECT_EQ(verdict_of_run(run), Verdict::kTimeLimitExceeded);
  run.status = StageStatus::kMemoryLimitExceeded;
  EXPECT_EQ(verdict_of_run(run), Verdict::kMemoryLimitExceeded);
  run.status = StageStatus::kOutputLimitExceeded;
  EXPECT_EQ(verdict_of_run(run), Verdict::kOutputLimitExceeded);
  run.status = StageStatus::kInternalError;
  EXPECT_EQ(verdict_of_run(run), Verdict::kInternalError);
  EXPECT_EQ(result_of_verdict(Verdict::kAccepted), Result::kAccepted);
  EXPECT_EQ(result_of_verdict(Verdict::kWrongAnswer), Result::kWrongAnswer);
  EXPECT_EQ(result_of_verdict(Verdict::kCheckerError), Result::kCheckerError);
  EXPECT_EQ(result_of_verdict(Verdict::kTimeLimitExceeded), Result::kTimeLimitExceeded);
}

}  // namespace
}  // namespace cutor::judge
