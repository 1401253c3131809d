// submission_to_json and the UTF-8 sanitizer.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <csignal>

#include "api/json_text.h"
#include "api/submission_json.h"
#include "api/text_encoding.h"

namespace cutor {
namespace {
namespace json = boost::json;

const std::string kFffd = "\xEF\xBF\xBD";

Submission sample() {
  Submission s;
  s.id = "6f1c0e4e-2b1a-4c7e-9d3f-0a1b2c3d4e5f";
  s.created_at_ms = 1795626000123;  // 2026-11-25T17:00:00.123Z
  s.request.files = {{"run.sh", "echo"}};
  return s;
}

TEST(ApiJson, QueuedSubmissionHasNullResultAndPendingStages) {
  Submission s = sample();
  s.result = Result::kOk;  // even if set early, a result shows only once FINISHED
  s.finished_at_ms = 1795626001000;
  const json::object o = submission_to_json(s, false);
  EXPECT_EQ(o.at("id").as_string(), s.id);
  EXPECT_EQ(o.at("status").as_string(), "QUEUED");
  EXPECT_TRUE(o.at("result").is_null());
  EXPECT_TRUE(o.at("finished_at").is_null());
  EXPECT_EQ(o.at("created_at").as_string(), "2026-11-25T17:00:00.123Z");
  for (const char* stage : {"environment", "build", "compile", "run"}) {
    SCOPED_TRACE(stage);
    const json::object& st = o.at(stage).as_object();
    EXPECT_EQ(st.at("status").as_string(), "PENDING");
    EXPECT_EQ(st.at("stdout").as_string(), "");
    EXPECT_EQ(st.at("stderr").as_string(), "");
    EXPECT_EQ(st.at("output").as_string(), "");
    EXPECT_TRUE(st.at("code").is_null());
    EXPECT_TRUE(st.at("signal").is_null());
    EXPECT_EQ(st.at("time").as_double(), 0.0);
    EXPECT_EQ(st.at("cpu_time_ms").as_int64(), 0);
    EXPECT_EQ(st.at("wall_time_ms").as_int64(), 0);
    EXPECT_EQ(st.at("memory_bytes").as_int64(), 0);
    EXPECT_EQ(st.at("truncated").as_bool(), false);
    EXPECT_EQ(st.size(), 11u);
  }
  EXPECT_EQ(o.size(), 9u);              // id, status, result, created_at, finished_at, 4 stages
  EXPECT_FALSE(o.contains("request"));  // never echo the submitted files
}

TEST(ApiJson, FinishedSubmissionShowsResultTimesAndSignalNames) {
  Submission s = sample();
  s.status = SubmissionStatus::kFinished;
  s.result = Result::kTimeLimitExceeded;
  s.finished_at_ms = 1795626004567;
  StageResult& run = s.stage(Stage::kRun);
  run.status = StageStatus::kWallTimeLimitExceeded;
  run.signal = SIGKILL;
  run.wall_time_us = 2'004'500;
  run.cpu_time_us = 1'999'999;
  run.memory_bytes = 1835008;
  run.truncated = true;
  StageResult& compile = s.stage(Stage::kCompile);
  compile.status = StageStatus::kOk;
  compile.code = 0;
  s.stage(Stage::kEnvironment).status = StageStatus::kSkipped;

  const json::object o = submission_to_json(s, false);
  EXPECT_EQ(o.at("status").as_string(), "FINISHED");
  EXPECT_EQ(o.at("result").as_string(), "TIME_LIMIT_EXCEEDED");
  EXPECT_EQ(o.at("finished_at").as_string(), "2026-11-25T17:00:04.567Z");
  const json::object& r = o.at("run").as_object();
  EXPECT_EQ(r.at("status").as_string(), "WALL_TIME_LIMIT_EXCEEDED");
  EXPECT_EQ(r.at("signal").as_string(), "SIGKILL");
  EXPECT_TRUE(r.at("code").is_null());
  EXPECT_DOUBLE_EQ(r.at("time").as_double(), 2.0045);
  EXPECT_EQ(r.at("wall_time_ms").as_int64(), 2004);
  EXPECT_EQ(r.at("cpu_time_ms").as_int64(), 1999);
  EXPECT_EQ(r.at("memory_bytes").as_int64(), 1835008);
  EXPECT_TRUE(r.at("truncated").as_bool());
  EXPECT_EQ(o.at("compile").at("code").as_int64(), 0);
  EXPECT_TRUE(o.at("compile").at("signal").is_null());
  EXPECT_EQ(o.at("environment").at("status").as_string(), "SKIPPED");
}

TEST(ApiJson, SignalNamesForCommonAndUnnamedSignals) {
  StageResult r;
  r.status = StageStatus::kSignaled;
  r.signal = SIGSEGV;
  EXPECT_EQ(stage_to_json(r, false).at("signal").as_string(), "SIGSEGV");
  r.signal = SIGXCPU;
  EXPECT_EQ(stage_to_json(r, false).at("signal").as_string(), "SIGXCPU");
  r.signal = 77;  // a real-time signal number without a short name
  EXPECT_TRUE(
      std::string_view(stage_to_json(r, false).at("signal").as_string()).starts_with("SIG"));
}

TEST(ApiJson, OutputIsSanitizedByDefaultAndExactInBase64) {
  StageResult r;
  r.status = StageStatus::kOk;
  r.code = 0;
  r.stdout_data = std::string("ok\xff\0end", 7);
  r.stderr_data = "caf\xc3\xa9";
  r.output = r.stdout_data + r.stderr_data;
  const json::object text = stage_to_json(r, false);
  EXPECT_EQ(text.at("stdout").as_string(), std::string("ok") + kFffd + std::string("\0end", 4));
  EXPECT_EQ(text.at("stderr").as_string(), "caf\xc3\xa9");
  // Serialized JSON is valid UTF-8 and the NUL is escaped, not dropped.
  const std::string serialized = json::serialize(text);
  EXPECT_TRUE(is_valid_utf8(serialized));
  EXPECT_NE(serialized.find("\\u0000end"), std::string::npos);

  const json::object b64 = stage_to_json(r, true);
  EXPECT_EQ(b64.at("stdout").as_string(), base64_encode(r.stdout_data));
  EXPECT_EQ(*base64_decode(b64.at("stdout").as_string()), r.stdout_data);
  EXPECT_EQ(*base64_decode(b64.at("stderr").as_string()), r.stderr_data);
  EXPECT_EQ(*base64_decode(b64.at("output").as_string()), r.output);
  EXPECT_EQ(b64.at("stdout").as_string(), "b2v/AGVuZA==");
}

TEST(ApiJson, Base64AppliesToEveryStageOfASubmission) {
  Submission s = sample();
  s.stage(Stage::kCompile).stderr_data = "\x80";
  s.stage(Stage::kRun).output = "\xfe";
  const json::object o = submission_to_json(s, true);
  EXPECT_EQ(o.at("compile").at("stderr").as_string(), "gA==");
  EXPECT_EQ(o.at("run").at("output").as_string(), "/g==");
  EXPECT_EQ(o.at("build").at("stdout").as_string(), "");
}

TEST(ApiJson, ErrorShape) {
  const ApiError e =
      make_api_error(400, "invalid_request", "files[2].name", "must be a relative path");
  const json::object o = api_error_to_json(e);
  EXPECT_EQ(o.size(), 1u);
  const json::object& inner = o.at("error").as_object();
  EXPECT_EQ(inner.at("code").as_string(), "invalid_request");
  EXPECT_EQ(inner.at("message").as_string(), "files[2].name: must be a relative path");
  EXPECT_EQ(inner.at("field").as_string(), "files[2].name");
  const json::object no_field = api_error_to_json(make_api_error(404, "not_found", "", "nothing"));
  ASSERT_TRUE(no_field.at("error").as_object().contains("field"));
  EXPECT_TRUE(no_field.at("error").at("field").is_null());
}

struct Utf8Case {
  const char* label;
  std::string in;
  std::string out;
};

TEST(Utf8Sanitizer, ReplacesEachMaximalIllFormedSubpart) {
  const std::string R = kFffd;
  const std::vector<Utf8Case> cases = {
      {"ascii", "hello", "hello"},
      {"empty", "", ""},
      {"nul kept", std::string("a\0b", 3), std::string("a\0b", 3)},
      {"two-byte", "\xc3\xa9", "\xc3\xa9"},
      {"three-byte", "\xe2\x82\xac", "\xe2\x82\xac"},
      {"four-byte", "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
      {"max code point", "\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"},
      {"last before surrogates", "\xed\x9f\xbf", "\xed\x9f\xbf"},
      {"lone continuation", "a\x80z", "a" + R + "z"},
      {"two continuations", "\x80\xbf", R + R},
      {"overlong slash C0 AF", "\xc0\xaf", R + R},
      {"overlong C1", "\xc1\xbf", R + R},
      {"overlong three-byte", "\xe0\x80\xaf", R + R + R},
      {"overlong four-byte", "\xf0\x80\x80\xaf", R + R + R + R},
      {"surrogate high", "\xed\xa0\x80", R + R + R},
      {"surrogate low", "\xed\xbf\xbf", R + R + R},
      {"above U+10FFFF", "\xf4\x90\x80\x80", R + R + R + R},
      {"F5 lead", "\xf5\x80\x80\x80", R + R + R + R},
      {"FF byte", "\xff", R},
      {"FE FF", "\xfe\xff", R + R},
      {"truncated two-byte at end", "a\xc3", "a" + R},
      {"truncated three-byte at end", "a\xe2\x82", "a" + R},
      {"truncated four-byte at end", "\xf0\x9f\x98", R},
      {"truncated then ascii", "\xe2\x82z", R + "z"},
      {"truncated then new lead", "\xe2\xc3\xa9", R + "\xc3\xa9"},
      {"truncated four then valid", "\xf0\x9f\xe2\x82\xac", R + "\xe2\x82\xac"},
      {"mixed", "ok\xc3\xa9\xff\xf0\x9f\x98\x80!", "ok\xc3\xa9" + R + "\xf0\x9f\x98\x80!"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string got = sanitize_utf8(c.in);
    EXPECT_EQ(got, c.out);
    EXPECT_TRUE(is_valid_utf8(got));
    EXPECT_EQ(is_valid_utf8(c.in), c.in == c.out);
  }
}

TEST(Utf8Sanitizer, EveryByteStringBecomesValid) {
  // All two-byte strings and a pseudo-random sweep of longer ones.
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      const std::string in{static_cast<char>(a), static_cast<char>(b)};
      ASSERT_TRUE(is_valid_utf8(sanitize_utf8(in))) << a << "," << b;
    }
  }
  uint32_t x = 12345;
  for (int i = 0; i < 2000; ++i) {
    std::string in;
    for (int k = 0; k < 16; ++k) {
      x = x * 1664525 + 1013904223;
      in += static_cast<char>(x >> 24);
    }
    const std::string out = sanitize_utf8(in);
    ASSERT_TRUE(is_valid_utf8(out));
    ASSERT_EQ(sanitize_utf8(out), out);  // idempotent
  }
}

}  // namespace
}  // namespace cutor

namespace cutor {
namespace {

// Doubles are written in plain decimal notation, as the SPEC's examples show them, and
// nothing else of the text changes.
TEST(ApiJsonText, DoublesAreWrittenInDecimalNotation) {
  boost::json::object o;
  o["time"] = 0.000313;
  o["zero"] = 0.0;
  o["whole"] = 3.0;
  o["big"] = 1.5e20;
  o["negative"] = -0.25;
  o["int"] = 42;
  o["neg_int"] = -7;
  o["text"] = "1E5 \"quoted\" \\ 2.5E-3";
  o["nested"] = boost::json::array{0.004, boost::json::object{{"t", 1e-7}}};
  EXPECT_EQ(to_json_text(o),
            "{\"time\":0.000313,\"zero\":0.0,\"whole\":3.0,\"big\":150000000000000000000.0,"
            "\"negative\":-0.25,\"int\":42,\"neg_int\":-7,"
            "\"text\":\"1E5 \\\"quoted\\\" \\\\ 2.5E-3\",\"nested\":[0.004,{\"t\":0.0000001}]}");
  // What it writes reads back as the same values.
  EXPECT_EQ(boost::json::parse(to_json_text(o)), boost::json::value(o));
}

TEST(ApiJsonText, AFinishedSubmissionsStageTimesHaveNoExponent) {
  Submission s = sample();
  s.status = SubmissionStatus::kFinished;
  s.result = Result::kOk;
  s.stage(Stage::kEnvironment).status = StageStatus::kSkipped;
  s.stage(Stage::kRun).status = StageStatus::kOk;
  s.stage(Stage::kRun).code = 0;
  s.stage(Stage::kRun).wall_time_us = 313;
  const std::string text = to_json_text(submission_to_json(s, false));
  EXPECT_NE(text.find("\"time\":0.000313"), std::string::npos) << text;
  EXPECT_NE(text.find("\"time\":0.0,"), std::string::npos) << text;  // a skipped stage
  EXPECT_EQ(text.find("E-"), std::string::npos) << text;
  EXPECT_EQ(text.find("0E0"), std::string::npos) << text;
}

}  // namespace
}  // namespace cutor
