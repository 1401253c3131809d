// The request record encoding: exact round trips of arbitrary bytes, and refusal of
// every malformed record without reading out of bounds.
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "store/request_codec.h"
#include "store/submission_store.h"
#include "store_test_util.h"

namespace cutor {
namespace {

SubmissionRequest binary_request() {
  SubmissionRequest r;
  r.files.push_back({"run.sh", "sh main.sh \"$@\"\n"});
  r.files.push_back({"data.bin", std::string("\0\xff\x00\x80zz\n", 7)});
  r.files.push_back({"empty", ""});
  r.files.push_back({"src/big.txt", std::string(100000, '\xfe')});
  r.stdin_data = std::string("in\0put\xff", 7);
  r.args = {"a", "", "c d", std::string("\xc3\x28", 2)};
  r.env = {{"KEY", "value"}, {"EMPTY", ""}, {"B", "1"}};
  r.limits[static_cast<int>(Stage::kRun)] = {
      .cpu_time_ms = 5000,
      .wall_time_ms = 10000,
      .memory_bytes = int64_t{512} << 20,
      .processes = 64,
      .output_bytes = 1 << 20,
      .file_size_bytes = std::numeric_limits<int64_t>::max()};
  r.limits[static_cast<int>(Stage::kCompile)].cpu_time_ms = -1;  // survives as bits
  r.limits[static_cast<int>(Stage::kEnvironment)].wall_time_ms = 127;
  r.limits[static_cast<int>(Stage::kEnvironment)].processes = 128;
  return r;
}

TEST(StoreCodec, RoundTripsBinaryContentExactly) {
  SubmissionRequest r = binary_request();
  std::string bytes = encode_request(r);
  EXPECT_TRUE(testing_util::same_request(decode_request(bytes), r));
}

TEST(StoreCodec, RoundTripsAnEmptyRequest) {
  SubmissionRequest r;
  EXPECT_TRUE(testing_util::same_request(decode_request(encode_request(r)), r));
}

TEST(StoreCodec, EveryTruncationIsRefused) {
  SubmissionRequest r;
  r.files.push_back({"run.sh", std::string("x\0y", 3)});
  r.stdin_data = "in";
  r.args = {"a"};
  r.env = {{"K", "V"}};
  r.limits[3].file_size_bytes = int64_t{1} << 40;
  std::string bytes = encode_request(r);
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW(decode_request(std::string_view(bytes).substr(0, n)), StoreError)
        << "prefix " << n;
}

TEST(StoreCodec, TrailingBytesAreRefused) {
  std::string bytes = encode_request(binary_request()) + '\0';
  EXPECT_THROW(decode_request(bytes), StoreError);
}

TEST(StoreCodec, AdapterDataIsVersion3TheVersion2RecordWithOneStringMore) {
  SubmissionRequest r = binary_request();
  EXPECT_EQ(encode_request(r)[0], 1);
  testing_util::add_tests(r);
  const std::string v2 = encode_request(r);
  EXPECT_EQ(v2[0], 2);
  r.adapter_data = R"({"api":"judge0","language_id":7})";
  const std::string v3 = encode_request(r);
  EXPECT_EQ(v3[0], 3);
  EXPECT_TRUE(testing_util::same_request(decode_request(v3), r));
  EXPECT_EQ(decode_request(v3).adapter_data, r.adapter_data);
  EXPECT_EQ(v3.substr(1, v2.size() - 1), v2.substr(1));
  for (size_t n = 0; n < v3.size(); ++n)
    EXPECT_THROW(decode_request(std::string_view(v3).substr(0, n)), StoreError) << n;
  std::string empty_v3 = v2 + '\0';  // a version 3 record with empty adapter data
  empty_v3[0] = 3;
  EXPECT_THROW(decode_request(empty_v3), StoreError);
  // Without tests, adapter data still writes the (empty) tests section.
  SubmissionRequest plain = binary_request();
  plain.adapter_data = "x";
  EXPECT_TRUE(testing_util::same_request(decode_request(encode_request(plain)), plain));
}

TEST(StoreCodec, UnknownVersionIsRefused) {
  std::string bytes = encode_request(SubmissionRequest{});
  bytes[0] = 4;
  EXPECT_THROW(decode_request(bytes), StoreError);
}

TEST(StoreCodec, HugeCountIsRefusedWithoutAllocating) {
  // version 1, then a file count of 2^62 and nothing else.
  std::string bytes = "\x01";
  for (int i = 0; i < 8; ++i) bytes += '\x80';
  bytes += '\x40';
  try {
    decode_request(bytes);
    FAIL() << "decoded a record claiming 2^62 files";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("files"), std::string::npos) << e.what();
  }
}

TEST(StoreCodec, LengthPastTheEndIsRefused) {
  // version 1, one file, name length 200 with 3 bytes present.
  std::string bytes = std::string("\x01\x01\xc8\x01", 4) + "abc";
  EXPECT_THROW(decode_request(bytes), StoreError);
}

TEST(StoreCodec, OverlongVarintIsRefused) {
  std::string bytes = "\x01" + std::string(11, '\xff');
  EXPECT_THROW(decode_request(bytes), StoreError);
  // Ten bytes whose last one carries more than the 64th bit.
  bytes = "\x01" + std::string(9, '\xff') + "\x02";
  EXPECT_THROW(decode_request(bytes), StoreError);
}

TEST(StoreCodec, RoundTripsTestsAndChecker) {
  SubmissionRequest r;  // small, for the truncation loop below
  r.files.push_back({"run.sh", "cat"});
  testing_util::add_tests(r);
  const std::string bytes = encode_request(r);
  EXPECT_EQ(bytes[0], 2);  // version 2: has tests
  EXPECT_TRUE(testing_util::same_request(decode_request(bytes), r));
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW(decode_request(std::string_view(bytes).substr(0, n)), StoreError) << n;
  SubmissionRequest with_big_files = binary_request();
  testing_util::add_tests(with_big_files);
  EXPECT_TRUE(
      testing_util::same_request(decode_request(encode_request(with_big_files)), with_big_files));
  EXPECT_EQ(encode_request(binary_request())[0], 1);  // no tests: readable by older servers
}

TEST(StoreCodec, RoundTripsATestResult) {
  TestResult t;
  t.name = "big";
  t.verdict = Verdict::kRuntimeError;
  t.checker_message = "m";
  t.run.status = StageStatus::kSignaled;
  t.run.signal = 11;
  t.run.stdout_data = std::string("\0\xff", 2);
  t.run.output = "x";
  t.run.wall_time_us = 1;
  t.run.cpu_time_us = int64_t{1} << 40;
  t.run.memory_bytes = 3;
  t.run.truncated = true;
  const std::string bytes = encode_test_result(t);
  EXPECT_EQ(decode_test_result(bytes), t);
  t.run.signal.reset();
  t.run.code = 0;
  EXPECT_EQ(decode_test_result(encode_test_result(t)), t);
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW(decode_test_result(std::string_view(bytes).substr(0, n)), StoreError) << n;
  EXPECT_THROW(decode_test_result(bytes + "x"), StoreError);
}

}  // namespace
}  // namespace cutor
