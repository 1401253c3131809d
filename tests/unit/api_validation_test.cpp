// parse_submission_request: every refusal of SPEC section 2 with its code and field, and
// the accepted forms decoded exactly.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/submission_json.h"
#include "api/text_encoding.h"

namespace cutor {
namespace {

const std::string kRun = R"({"name":"run.sh","content":"echo hi"})";

std::string with_files(const std::string& extra_files, const std::string& extra_fields = "") {
  std::string body = R"({"files":[)" + kRun;
  if (!extra_files.empty()) body += "," + extra_files;
  body += "]";
  if (!extra_fields.empty()) body += "," + extra_fields;
  return body + "}";
}

// SandboxLimits has no operator==; compare every named limit.
bool same_limits(const SandboxLimits& a, const SandboxLimits& b) {
  for (auto name : kLimitNames)
    if (*limit_field(a, name) != *limit_field(b, name)) return false;
  return true;
}

struct BadCase {
  std::string label;
  std::string body;
  std::string code;
  std::string field;
};

std::vector<BadCase> bad_cases() {
  const std::string long_component(256, 'a');
  std::string long_name;
  while (long_name.size() < 4096) long_name += "abcdefg/";
  long_name += "x";
  std::string too_many = R"({"files":[)" + kRun;
  for (int i = 0; i < 1000; ++i)
    too_many += R"(,{"name":"f)" + std::to_string(i) + R"(","content":""})";
  too_many += "]}";
  return {
      {"not json", "{", "invalid_json", ""},
      {"empty body", "", "invalid_json", ""},
      {"trailing garbage", with_files("") + "x", "invalid_json", ""},
      {"array body", "[]", "invalid_request", ""},
      {"string body", R"("files")", "invalid_request", ""},
      {"null body", "null", "invalid_request", ""},
      {"unknown top-level field", with_files("", R"("language_id":71)"), "invalid_request",
       "language_id"},
      {"no files", R"({"stdin":""})", "invalid_request", "files"},
      {"files not array", R"({"files":{"name":"run.sh"}})", "invalid_request", "files"},
      {"files empty", R"({"files":[]})", "invalid_request", "files"},
      {"too many files", too_many, "invalid_request", "files"},
      {"no run.sh", R"({"files":[{"name":"main.py","content":""}]})", "invalid_request", "files"},
      {"run.sh only nested", R"({"files":[{"name":"x/run.sh","content":""}]})", "invalid_request",
       "files"},
      {"file not object", with_files(R"("main.py")"), "invalid_request", "files[1]"},
      {"file unknown field", with_files(R"({"name":"a","content":"","mode":"755"})"),
       "invalid_request", "files[1].mode"},
      {"name missing", with_files(R"({"content":""})"), "invalid_request", "files[1].name"},
      {"name not string", with_files(R"({"name":7,"content":""})"), "invalid_request",
       "files[1].name"},
      {"name empty", with_files(R"({"name":"","content":""})"), "invalid_request", "files[1].name"},
      {"name absolute", with_files(R"({"name":"/etc/passwd","content":""})"), "invalid_request",
       "files[1].name"},
      {"name dotdot", with_files(R"({"name":"../x","content":""})"), "invalid_request",
       "files[1].name"},
      {"name inner dotdot", with_files(R"({"name":"a/../../x","content":""})"), "invalid_request",
       "files[1].name"},
      {"name trailing dotdot", with_files(R"({"name":"a/..","content":""})"), "invalid_request",
       "files[1].name"},
      {"name dot", with_files(R"({"name":".","content":""})"), "invalid_request", "files[1].name"},
      {"name dot component", with_files(R"({"name":"a/./b","content":""})"), "invalid_request",
       "files[1].name"},
      {"name empty component", with_files(R"({"name":"a//b","content":""})"), "invalid_request",
       "files[1].name"},
      {"name trailing slash", with_files(R"({"name":"a/","content":""})"), "invalid_request",
       "files[1].name"},
      {"name NUL", with_files(R"({"name":"a\u0000b","content":""})"), "invalid_request",
       "files[1].name"},
      {"name backslash", with_files(R"({"name":"a\\b","content":""})"), "invalid_request",
       "files[1].name"},
      {"name component too long",
       with_files(R"({"name":")" + long_component + R"(","content":""})"), "invalid_request",
       "files[1].name"},
      {"name too long", with_files(R"({"name":")" + long_name + R"(","content":""})"),
       "invalid_request", "files[1].name"},
      {"name repeated", with_files(R"({"name":"run.sh","content":""})"), "invalid_request",
       "files[1].name"},
      {"file and directory", with_files(R"({"name":"a","content":""},{"name":"a/b","content":""})"),
       "invalid_request", "files[2].name"},
      {"directory before file",
       with_files(R"({"name":"a/b/c","content":""},{"name":"a/b","content":""})"),
       "invalid_request", "files[1].name"},
      {"file deep inside a file",
       with_files(R"({"name":"x/y","content":""},{"name":"x/y/z/w","content":""})"),
       "invalid_request", "files[2].name"},
      {"run.sh as directory", with_files(R"({"name":"run.sh/x","content":""})"), "invalid_request",
       "files[1].name"},
      {"content missing", with_files(R"({"name":"a"})"), "invalid_request", "files[1].content"},
      {"content not string", with_files(R"({"name":"a","content":[1]})"), "invalid_request",
       "files[1].content"},
      {"content null", with_files(R"({"name":"a","content":null})"), "invalid_request",
       "files[1].content"},
      {"encoding unknown", with_files(R"({"name":"a","content":"","encoding":"latin1"})"),
       "invalid_request", "files[1].encoding"},
      {"encoding not string", with_files(R"({"name":"a","content":"","encoding":true})"),
       "invalid_request", "files[1].encoding"},
      {"encoding upper case", with_files(R"({"name":"a","content":"","encoding":"BASE64"})"),
       "invalid_request", "files[1].encoding"},
      {"base64 bad char", with_files(R"({"name":"a","content":"AA*A","encoding":"base64"})"),
       "invalid_request", "files[1].content"},
      {"base64 no padding", with_files(R"({"name":"a","content":"AAE","encoding":"base64"})"),
       "invalid_request", "files[1].content"},
      {"base64 padding inside",
       with_files(R"({"name":"a","content":"AA==AAAA","encoding":"base64"})"), "invalid_request",
       "files[1].content"},
      {"base64 triple padding", with_files(R"({"name":"a","content":"A===","encoding":"base64"})"),
       "invalid_request", "files[1].content"},
      {"base64 whitespace", with_files(R"({"name":"a","content":"AAEC\n","encoding":"base64"})"),
       "invalid_request", "files[1].content"},
      {"base64 url alphabet", with_files(R"({"name":"a","content":"-_-_","encoding":"base64"})"),
       "invalid_request", "files[1].content"},
      {"base64 non-zero pad bits",
       with_files(R"({"name":"a","content":"AB==","encoding":"base64"})"), "invalid_request",
       "files[1].content"},
      {"hex odd length", with_files(R"({"name":"a","content":"abc","encoding":"hex"})"),
       "invalid_request", "files[1].content"},
      {"hex bad digit", with_files(R"({"name":"a","content":"0g","encoding":"hex"})"),
       "invalid_request", "files[1].content"},
      {"hex prefix", with_files(R"({"name":"a","content":"0x00","encoding":"hex"})"),
       "invalid_request", "files[1].content"},
      {"stdin not string", with_files("", R"("stdin":5)"), "invalid_request", "stdin"},
      {"inputs not string", with_files("", R"("inputs":["a"])"), "invalid_request", "inputs"},
      {"stdin and inputs", with_files("", R"("stdin":"a","inputs":"a")"), "invalid_request",
       "inputs"},
      {"args not array", with_files("", R"("args":"a b")"), "invalid_request", "args"},
      {"arg not string", with_files("", R"("args":["a",1])"), "invalid_request", "args[1]"},
      {"arg NUL", with_files("", R"("args":["a","b\u0000c"])"), "invalid_request", "args[1]"},
      {"env not object", with_files("", R"("env":["A=1"])"), "invalid_request", "env"},
      {"env empty key", with_files("", R"("env":{"":"x"})"), "invalid_request", "env."},
      {"env key with =", with_files("", R"("env":{"A=B":"x"})"), "invalid_request", "env.A=B"},
      {"env key NUL", with_files("", R"("env":{"A\u0000":"x"})"), "invalid_request",
       std::string("env.A\0", 6)},
      {"env value not string", with_files("", R"("env":{"KEY":1})"), "invalid_request", "env.KEY"},
      {"env value NUL", with_files("", R"("env":{"KEY":"a\u0000"})"), "invalid_request", "env.KEY"},
      {"limits not object", with_files("", R"("limits":5)"), "invalid_request", "limits"},
      {"limits unknown stage", with_files("", R"("limits":{"link":{}})"), "invalid_request",
       "limits.link"},
      {"limits build stage", with_files("", R"("limits":{"build":{"wall_time_ms":1}})"),
       "invalid_request", "limits.build"},
      {"limits stage not object", with_files("", R"("limits":{"run":1000})"), "invalid_request",
       "limits.run"},
      {"limit unknown name", with_files("", R"("limits":{"run":{"stack_bytes":1}})"),
       "invalid_request", "limits.run.stack_bytes"},
      {"limit zero", with_files("", R"("limits":{"run":{"wall_time_ms":0}})"), "invalid_request",
       "limits.run.wall_time_ms"},
      {"limit negative", with_files("", R"("limits":{"run":{"wall_time_ms":-5}})"),
       "invalid_request", "limits.run.wall_time_ms"},
      {"limit float", with_files("", R"("limits":{"run":{"wall_time_ms":1.5}})"), "invalid_request",
       "limits.run.wall_time_ms"},
      {"limit integral float", with_files("", R"("limits":{"run":{"wall_time_ms":1000.0}})"),
       "invalid_request", "limits.run.wall_time_ms"},
      {"limit exponent", with_files("", R"("limits":{"run":{"wall_time_ms":1e3}})"),
       "invalid_request", "limits.run.wall_time_ms"},
      {"limit string", with_files("", R"("limits":{"run":{"wall_time_ms":"1000"}})"),
       "invalid_request", "limits.run.wall_time_ms"},
      {"limit bool", with_files("", R"("limits":{"compile":{"processes":true}})"),
       "invalid_request", "limits.compile.processes"},
      {"limit null", with_files("", R"("limits":{"run":{"memory_bytes":null}})"), "invalid_request",
       "limits.run.memory_bytes"},
      {"limit above max", with_files("", R"("limits":{"run":{"wall_time_ms":600001}})"),
       "invalid_request", "limits.run.wall_time_ms"},
      {"limit above int64",
       with_files("", R"("limits":{"environment":{"memory_bytes":18446744073709551615}})"),
       "invalid_request", "limits.environment.memory_bytes"},
      {"duplicate top-level key", R"({"files":[{"name":"run.sh","content":""}],"files":[]})",
       "invalid_request", "files"},
      {"duplicate stdin", with_files("", R"("stdin":"a","stdin":"b")"), "invalid_request", "stdin"},
      {"duplicate file key", with_files(R"({"name":"a","name":"b","content":""})"),
       "invalid_request", "files[1].name"},
      {"duplicate env key", with_files("", R"("env":{"K":"1","L":"2","K":"3"})"), "invalid_request",
       "env.K"},
      {"duplicate limit", with_files("", R"("limits":{"run":{"wall_time_ms":1,"wall_time_ms":2}})"),
       "invalid_request", "limits.run.wall_time_ms"},
      {"duplicate nested in array", with_files("", R"("args":[{"a":1,"a":2}])"), "invalid_request",
       "args[0].a"},
      {"too deep", std::string(100, '[') + std::string(100, ']'), "invalid_json", ""},
  };
}

TEST(ApiValidation, RefusesEveryMalformedRequest) {
  const auto cases = bad_cases();
  ASSERT_GE(cases.size(), 45u);
  const LimitTable table = LimitTable::builtin();
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    auto r = parse_submission_request(c.body, table, ApiLimits{});
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().http_status, 400);
    EXPECT_EQ(r.error().code, c.code);
    EXPECT_EQ(r.error().field, c.field);
    if (!c.field.empty()) {
      EXPECT_TRUE(r.error().message.starts_with(c.field + ": ")) << r.error().message;
    }
  }
}

TEST(ApiValidation, MaxFilesIsConfigurable) {
  const std::string body = with_files(R"({"name":"a","content":""},{"name":"b","content":""})");
  EXPECT_TRUE(parse_submission_request(body, LimitTable::builtin(), {.max_files = 3}).has_value());
  auto r = parse_submission_request(body, LimitTable::builtin(), {.max_files = 2});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().field, "files");
}

TEST(ApiValidation, ExactlyAtTheLimitsIsAccepted) {
  std::string component(255, 'c');
  std::string name;
  while (name.size() + 256 <= 4095) name += component + "/";
  name += std::string(4095 - name.size(), 'z');
  ASSERT_EQ(name.size(), 4095u);
  const std::string body = with_files(R"({"name":")" + name + R"(","content":""})",
                                      R"("limits":{"run":{"wall_time_ms":600000}})");
  auto r = parse_submission_request(body, LimitTable::builtin(), {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->files[1].name, name);
  EXPECT_EQ(r->limits_for(Stage::kRun).wall_time_ms, 600000);
}

TEST(ApiValidation, DefaultsAreApplied) {
  const LimitTable table = LimitTable::builtin();
  auto r = parse_submission_request(with_files(""), table, {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->stdin_data, "");
  EXPECT_TRUE(r->args.empty());
  EXPECT_TRUE(r->env.empty());
  for (Stage s : kLimitedStages)
    EXPECT_TRUE(same_limits(r->limits_for(s), table.default_for(s))) << stage_name(s);
  ASSERT_EQ(r->files.size(), 1u);
  EXPECT_EQ(r->files[0], (SubmissionFile{"run.sh", "echo hi"}));
}

TEST(ApiValidation, LimitsResolvePerStage) {
  const LimitTable table = LimitTable::builtin();
  auto r = parse_submission_request(
      with_files(
          "",
          R"("limits":{"run":{"wall_time_ms":2000,"memory_bytes":268435456},"compile":{"processes":7},"environment":{}})"),
      table, {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  SandboxLimits run = table.default_for(Stage::kRun);
  run.wall_time_ms = 2000;
  run.memory_bytes = 268435456;
  EXPECT_TRUE(same_limits(r->limits_for(Stage::kRun), run));
  SandboxLimits compile = table.default_for(Stage::kCompile);
  compile.processes = 7;
  EXPECT_TRUE(same_limits(r->limits_for(Stage::kCompile), compile));
  EXPECT_TRUE(
      same_limits(r->limits_for(Stage::kEnvironment), table.default_for(Stage::kEnvironment)));
}

TEST(ApiValidation, EncodingsDecodeByteExact) {
  auto r = parse_submission_request(
      with_files(R"({"name":"data.bin","content":"AAEC/w==","encoding":"base64"},)"
                 R"({"name":"two","content":"/+8=","encoding":"base64"},)"
                 R"({"name":"empty","content":"","encoding":"base64"},)"
                 R"({"name":"h","content":"00ff7FaB","encoding":"hex"},)"
                 R"({"name":"u","content":"h\u00e9\u0000!","encoding":"utf8"})"),
      LimitTable::builtin(), {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->find_file("data.bin")->content, std::string("\x00\x01\x02\xff", 4));
  EXPECT_EQ(r->find_file("two")->content, "\xff\xef");
  EXPECT_EQ(r->find_file("empty")->content, "");
  EXPECT_EQ(r->find_file("h")->content, std::string("\x00\xff\x7f\xab", 4));
  EXPECT_EQ(r->find_file("u")->content, std::string("h\xc3\xa9\0!", 5));
}

TEST(ApiValidation, InputsIsTheOlderNameOfStdin) {
  auto a =
      parse_submission_request(with_files("", R"("inputs":"hello\n")"), LimitTable::builtin(), {});
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->stdin_data, "hello\n");
  auto b =
      parse_submission_request(with_files("", R"("stdin":"hello\n")"), LimitTable::builtin(), {});
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->stdin_data, "hello\n");
}

// Names that share a prefix without one being the other's directory are fine, and deep
// names (the per-prefix check once cost seconds of cpu for these) are all kept.
TEST(ApiValidation, SiblingsAndDeepNamesAreNotDirectoryConflicts) {
  std::string files = R"({"name":"a","content":""},{"name":"a-b/c","content":""},)"
                      R"({"name":"ab/c","content":""},{"name":"b/a","content":""})";
  std::string deep;
  for (int i = 0; i < 2000; ++i) deep += "d/";
  deep += "leaf";
  for (int i = 0; i < 50; ++i)
    files += R"(,{"name":"n)" + std::to_string(i) + "/" + deep + R"(","content":""})";
  auto parsed = parse_submission_request(with_files(files), LimitTable::builtin(), ApiLimits{});
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message;
  ASSERT_EQ(parsed->files.size(), 55u);
  EXPECT_EQ(parsed->files[54].name, "n49/" + deep);
}

TEST(ApiValidation, NestedNamesArgsAndEnvAreKept) {
  auto r = parse_submission_request(
      with_files(
          R"({"name":"src/main.c","content":"int main(){}"},{"name":"src/lib/a.h","content":""},{"name":".hidden/..x/...","content":""})",
          R"("args":["a","","b c"],"env":{"KEY":"value","EMPTY":"","PATH":"/x"})"),
      LimitTable::builtin(), {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_NE(r->find_file("src/main.c"), nullptr);
  EXPECT_NE(r->find_file(".hidden/..x/..."), nullptr);
  EXPECT_EQ(r->args, (std::vector<std::string>{"a", "", "b c"}));
  ASSERT_EQ(r->env.size(), 3u);
  EXPECT_EQ(r->env[0], (std::pair<std::string, std::string>{"KEY", "value"}));
  EXPECT_EQ(r->env[1], (std::pair<std::string, std::string>{"EMPTY", ""}));
}

TEST(ApiValidation, CheckFileName) {
  EXPECT_EQ(check_file_name("a/b/c.txt"), "");
  EXPECT_EQ(check_file_name("cutor.nix"), "");
  EXPECT_NE(check_file_name(".."), "");
  EXPECT_NE(check_file_name("/"), "");
  EXPECT_NE(check_file_name(std::string("a\0", 2)), "");
}

TEST(TextEncoding, Base64RoundTripsEveryLength) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    const std::string enc = base64_encode(bytes);
    auto dec = base64_decode(enc);
    ASSERT_TRUE(dec.has_value()) << enc;
    EXPECT_EQ(*dec, bytes);
    bytes += static_cast<char>(i * 37 + 11);
  }
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("f"), "Zg==");
}

TEST(TextEncoding, HexDecode) {
  EXPECT_EQ(hex_decode(""), "");
  EXPECT_EQ(hex_decode("41"), "A");
  EXPECT_FALSE(hex_decode(" 41").has_value());
  EXPECT_FALSE(hex_decode("4").has_value());
}

}  // namespace
}  // namespace cutor
