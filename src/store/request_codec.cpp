#include "store/request_codec.h"

#include <cstdint>
#include <cstring>

#include "store/submission_store.h"

namespace cutor {
namespace {

constexpr uint64_t kCodecVersion = 1;
constexpr uint64_t kCodecVersionWithTests = 2;
constexpr uint64_t kCodecVersionWithAdapterData = 3;  // version 2, then adapter_data
constexpr uint64_t kTestResultVersion = 1;

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_string(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

uint64_t double_bits(double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  return bits;
}

double bits_double(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

void put_limits(std::string& out, const SandboxLimits& limits) {
  for (std::string_view name : kLimitNames)
    put_varint(out, static_cast<uint64_t>(*limit_field(limits, name)));
}

// Reads from a byte range, failing with the field being read when the record ends
// early or a length points past its end.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : rest_(bytes) {}

  uint64_t varint(const char* field) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (rest_.empty()) fail(field, "truncated");
      auto byte = static_cast<uint8_t>(rest_.front());
      rest_.remove_prefix(1);
      // The tenth byte may carry only the top bit of a 64-bit value.
      if (shift == 63 && byte > 1) fail(field, "varint overflows 64 bits");
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return v;
    }
    fail(field, "varint longer than 10 bytes");
  }

  std::string string(const char* field) {
    uint64_t n = varint(field);
    if (n > rest_.size()) fail(field, "length past the end of the record");
    std::string s(rest_.substr(0, n));
    rest_.remove_prefix(n);
    return s;
  }

  // A count of items, each taking at least `min_item_bytes`: bounds the reservation a
  // corrupt count could ask for.
  uint64_t count(const char* field, uint64_t min_item_bytes) {
    uint64_t n = varint(field);
    if (n > rest_.size() / min_item_bytes) fail(field, "count larger than the record");
    return n;
  }

  bool at_end() const { return rest_.empty(); }

  [[noreturn]] static void fail(const char* field, const char* why) {
    throw StoreError(std::string("corrupt request record: ") + field + ": " + why);
  }

 private:
  std::string_view rest_;
};

}  // namespace

std::string encode_request(const SubmissionRequest& r) {
  size_t size = 64 + r.stdin_data.size() + r.adapter_data.size();
  for (const auto& f : r.files) size += 10 + f.name.size() + f.content.size();
  for (const auto& a : r.args) size += 5 + a.size();
  for (const auto& [k, v] : r.env) size += 10 + k.size() + v.size();
  std::string out;
  out.reserve(size);
  // Version 1 records (no tests) stay readable by servers that predate tests.
  put_varint(out, !r.adapter_data.empty() ? kCodecVersionWithAdapterData
                  : r.tests.empty()       ? kCodecVersion
                                          : kCodecVersionWithTests);
  put_varint(out, r.files.size());
  for (const auto& f : r.files) {
    put_string(out, f.name);
    put_string(out, f.content);
  }
  put_string(out, r.stdin_data);
  put_varint(out, r.args.size());
  for (const auto& a : r.args) put_string(out, a);
  put_varint(out, r.env.size());
  for (const auto& [k, v] : r.env) {
    put_string(out, k);
    put_string(out, v);
  }
  for (Stage s : kAllStages) put_limits(out, r.limits_for(s));
  if (out[0] == static_cast<char>(kCodecVersion)) return out;
  put_varint(out, r.tests.size());
  for (const TestCase& t : r.tests) {
    put_string(out, t.name);
    put_string(out, t.stdin_data);
    put_varint(out, t.args.size());
    for (const auto& a : t.args) put_string(out, a);
    put_varint(out, t.expected_output ? 1 : 0);
    if (t.expected_output) put_string(out, *t.expected_output);
    put_limits(out, t.limits);
  }
  put_varint(out, static_cast<uint64_t>(r.checker.type));
  put_varint(out, double_bits(r.checker.abs_tolerance));
  put_varint(out, double_bits(r.checker.rel_tolerance));
  put_string(out, r.checker.file);
  put_varint(out, r.stop_on_first_failure ? 1 : 0);
  put_string(out, r.interactor_file);
  if (!r.adapter_data.empty()) put_string(out, r.adapter_data);
  return out;
}

SubmissionRequest decode_request(std::string_view bytes) {
  Reader in(bytes);
  uint64_t version = in.varint("version");
  if (version != kCodecVersion && version != kCodecVersionWithTests &&
      version != kCodecVersionWithAdapterData)
    Reader::fail("version", "unknown record version");
  SubmissionRequest r;
  uint64_t nfiles = in.count("files", 2);
  r.files.reserve(nfiles);
  for (uint64_t i = 0; i < nfiles; ++i) {
    SubmissionFile f;
    f.name = in.string("file name");
    f.content = in.string("file content");
    r.files.push_back(std::move(f));
  }
  r.stdin_data = in.string("stdin");
  uint64_t nargs = in.count("args", 1);
  r.args.reserve(nargs);
  for (uint64_t i = 0; i < nargs; ++i) r.args.push_back(in.string("arg"));
  uint64_t nenv = in.count("env", 2);
  r.env.reserve(nenv);
  for (uint64_t i = 0; i < nenv; ++i) {
    std::string key = in.string("env key");
    std::string value = in.string("env value");
    r.env.emplace_back(std::move(key), std::move(value));
  }
  auto read_limits = [&](SandboxLimits& limits) {
    for (std::string_view name : kLimitNames)
      *limit_field(limits, name) = static_cast<int64_t>(in.varint("limit"));
  };
  for (Stage s : kAllStages) read_limits(r.limits[static_cast<int>(s)]);
  if (version == kCodecVersionWithTests || version == kCodecVersionWithAdapterData) {
    uint64_t ntests = in.count("tests", 10);
    r.tests.reserve(ntests);
    for (uint64_t i = 0; i < ntests; ++i) {
      TestCase t;
      t.name = in.string("test name");
      t.stdin_data = in.string("test stdin");
      uint64_t n = in.count("test args", 1);
      for (uint64_t j = 0; j < n; ++j) t.args.push_back(in.string("test arg"));
      if (in.varint("test expected flag") != 0) t.expected_output = in.string("test expected");
      read_limits(t.limits);
      r.tests.push_back(std::move(t));
    }
    uint64_t type = in.varint("checker type");
    if (type > static_cast<uint64_t>(CheckerType::kScript))
      Reader::fail("checker type", "out of range");
    r.checker.type = static_cast<CheckerType>(type);
    r.checker.abs_tolerance = bits_double(in.varint("checker abs"));
    r.checker.rel_tolerance = bits_double(in.varint("checker rel"));
    r.checker.file = in.string("checker file");
    r.stop_on_first_failure = in.varint("stop_on_first_failure") != 0;
    r.interactor_file = in.string("interactor file");
  }
  if (version == kCodecVersionWithAdapterData) {
    r.adapter_data = in.string("adapter data");
    if (r.adapter_data.empty()) Reader::fail("adapter data", "empty in a version 3 record");
  }
  if (!in.at_end()) Reader::fail("record", "trailing bytes after the last field");
  return r;
}

std::string encode_test_result(const TestResult& t) {
  const StageResult& r = t.run;
  std::string out;
  out.reserve(64 + t.name.size() + r.stdout_data.size() + r.stderr_data.size() + r.output.size() +
              t.checker_message.size());
  put_varint(out, kTestResultVersion);
  put_string(out, t.name);
  put_varint(out, static_cast<uint64_t>(t.verdict));
  put_string(out, t.checker_message);
  put_varint(out, static_cast<uint64_t>(r.status));
  put_string(out, r.stdout_data);
  put_string(out, r.stderr_data);
  put_string(out, r.output);
  // Optional ints as 0 (absent) or value + 1 (zig-zag free: codes are 0..255, signals > 0).
  put_varint(out, r.code ? static_cast<uint64_t>(static_cast<uint32_t>(*r.code)) + 1 : 0);
  put_varint(out, r.signal ? static_cast<uint64_t>(static_cast<uint32_t>(*r.signal)) + 1 : 0);
  put_varint(out, static_cast<uint64_t>(r.wall_time_us));
  put_varint(out, static_cast<uint64_t>(r.cpu_time_us));
  put_varint(out, static_cast<uint64_t>(r.memory_bytes));
  put_varint(out, r.truncated ? 1 : 0);
  return out;
}

TestResult decode_test_result(std::string_view bytes) {
  Reader in(bytes);
  if (in.varint("version") != kTestResultVersion)
    Reader::fail("version", "unknown test result version");
  TestResult t;
  t.name = in.string("test name");
  uint64_t verdict = in.varint("verdict");
  if (verdict > static_cast<uint64_t>(Verdict::kInternalError))
    Reader::fail("verdict", "out of range");
  t.verdict = static_cast<Verdict>(verdict);
  t.checker_message = in.string("checker message");
  StageResult& r = t.run;
  uint64_t status = in.varint("status");
  if (status > static_cast<uint64_t>(StageStatus::kInternalError))
    Reader::fail("status", "out of range");
  r.status = static_cast<StageStatus>(status);
  r.stdout_data = in.string("stdout");
  r.stderr_data = in.string("stderr");
  r.output = in.string("output");
  if (uint64_t code = in.varint("code")) r.code = static_cast<int>(static_cast<uint32_t>(code - 1));
  if (uint64_t sig = in.varint("signal"))
    r.signal = static_cast<int>(static_cast<uint32_t>(sig - 1));
  r.wall_time_us = static_cast<int64_t>(in.varint("wall time"));
  r.cpu_time_us = static_cast<int64_t>(in.varint("cpu time"));
  r.memory_bytes = static_cast<int64_t>(in.varint("memory"));
  r.truncated = in.varint("truncated") != 0;
  if (!in.at_end()) Reader::fail("record", "trailing bytes after the test result");
  return t;
}

}  // namespace cutor
