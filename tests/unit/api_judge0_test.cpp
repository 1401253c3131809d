// Judge0's pieces that need no server: the expected_output comparison, Ruby's encode64,
// seconds as Judge0 writes them, language ids, fields and the stored request record.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "api/judge0_submission.h"
#include "api/text_encoding.h"

namespace cutor::judge0 {
namespace {

std::optional<std::string> out(std::string s) {
  return s;
}

TEST(Judge0Compare, TrailingWhitespaceOfEachLineAndTheEndIsIgnored) {
  EXPECT_TRUE(outputs_match("3", out("3\n")));
  EXPECT_TRUE(outputs_match("3\n", out("3")));
  EXPECT_TRUE(outputs_match("a\nb", out("a \t\nb\r\n\n\n")));
  EXPECT_TRUE(outputs_match("x", out(std::string("x\0\v\f", 4))));  // Ruby's rstrip takes NUL
  EXPECT_FALSE(outputs_match("3", out(" 3")));                      // leading is significant
  EXPECT_FALSE(outputs_match("a\nb", out("a\n\nb")));               // so are inner blank lines
  EXPECT_FALSE(outputs_match("a b", out("a  b")));
  EXPECT_FALSE(outputs_match("", std::nullopt));  // empty stdout is nil, never equal
  EXPECT_FALSE(outputs_match("3", std::nullopt));
  EXPECT_TRUE(outputs_match("\n", out(" ")));  // both strip to ""
}

TEST(Judge0Encode64, BreaksEvery60CharactersAndAtTheEnd) {
  EXPECT_EQ(encode64("hello, Judge0\n"), "aGVsbG8sIEp1ZGdlMAo=\n");
  EXPECT_EQ(encode64(""), "");
  const std::string bytes(45, 'a');  // exactly 60 characters of base64
  EXPECT_EQ(encode64(bytes), base64_encode(bytes) + "\n");
  const std::string longer(46, 'a');
  const std::string flat = base64_encode(longer);
  EXPECT_EQ(encode64(longer), flat.substr(0, 60) + "\n" + flat.substr(60) + "\n");
}

TEST(Judge0Seconds, MillisecondsWithTrailingZerosTrimmedButOneKept) {
  EXPECT_EQ(seconds_text(16'000), "0.016");
  EXPECT_EQ(seconds_text(290'000), "0.29");
  EXPECT_EQ(seconds_text(5'000'000), "5.0");
  EXPECT_EQ(seconds_text(0), "0.0");
  EXPECT_EQ(seconds_text(1'499), "0.001");
  EXPECT_EQ(seconds_text(1'500), "0.002");
}

Runtime runtime(std::string name, std::string version) {
  Runtime r;
  r.name = std::move(name);
  r.version = std::move(version);
  r.source_file = "main.x";
  r.run_sh = "exec ./main.x\n";
  return r;
}

TEST(Judge0Languages, IdsAreFnv1aOfNameAtVersionWhateverTheOrder) {
  const std::vector<Runtime> a = {runtime("python", "3.11.2"), runtime("bash", "5.2.15")};
  const std::vector<Runtime> b = {runtime("bash", "5.2.15"), runtime("python", "3.11.2")};
  const auto la = languages(a), lb = languages(b);
  ASSERT_EQ(la.size(), 2u);
  EXPECT_EQ(la[0].name, "bash (5.2.15)");
  EXPECT_EQ(la[0].id, lb[0].id);
  EXPECT_EQ(la[1].id, lb[1].id);
  // FNV-1a 32 of "bash@5.2.15", low 31 bits, computed by hand from the definition.
  uint32_t h = 2166136261u;
  for (unsigned char c : std::string("bash@5.2.15")) h = (h ^ c) * 16777619u;
  EXPECT_EQ(la[0].id, static_cast<int64_t>(h & 0x7fffffff));
  EXPECT_EQ(find_language(la, la[1].id)->runtime->name, "python");
  EXPECT_EQ(find_language(la, la[1].id + 1), nullptr);
}

TEST(Judge0Fields, DefaultsStarAndUnknownNames) {
  EXPECT_EQ(*parse_fields(nullptr), default_fields());
  EXPECT_EQ(parse_fields(nullptr)->size(), 8u);
  const std::string star = "*";
  EXPECT_EQ(parse_fields(&star)->size(), 35u);
  const std::string some = "status_id,stdout,,stdout";
  EXPECT_EQ(*parse_fields(&some), (std::vector<std::string>{"stdout", "status_id"}));
  const std::string bad = "stdout,zz,aa";
  EXPECT_EQ(parse_fields(&bad).error(), "invalid fields: [aa, zz]");
}

TEST(Judge0Submission, TheRequestCarriesTheRuntimeFilesAndTheMetaRoundTrips) {
  const std::vector<Runtime> rts = {runtime("bash", "5.2.15")};
  const int64_t id = languages(rts)[0].id;
  const auto body = boost::json::parse(
      R"({"source_code": "ZWNobyBoaQ==", "language_id": )" + std::to_string(id) +
      R"(, "expected_output": "aGkK", "cpu_time_limit": "1.5", "cpu_extra_time": 0.5,
          "command_line_arguments": " a  b ", "memory_limit": 1024})");
  auto req = parse_submission(body, true, rts, LimitTable::builtin());
  ASSERT_TRUE(req.has_value()) << boost::json::value(req.error());
  ASSERT_EQ(req->files.size(), 2u);
  EXPECT_EQ(req->files[0].name, "main.x");
  EXPECT_EQ(req->files[0].content, "echo hi");
  EXPECT_EQ(req->files[1].name, "run.sh");
  EXPECT_EQ(req->args, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(req->limits_for(Stage::kRun).cpu_time_ms, 2000);
  EXPECT_EQ(req->limits_for(Stage::kRun).memory_bytes, 1024 * 1024);
  const auto meta = meta_from_text(req->adapter_data);
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ(meta->expected_output, "hi\n");
  EXPECT_EQ(meta->cpu_time_limit_ms, 1500);
  EXPECT_EQ(meta->cpu_extra_time_ms, 500);
  EXPECT_EQ(meta->language_id, id);
  EXPECT_FALSE(meta_from_text("").has_value());
  EXPECT_FALSE(meta_from_text(R"({"api": "other"})").has_value());
}

}  // namespace
}  // namespace cutor::judge0
