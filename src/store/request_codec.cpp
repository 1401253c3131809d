#include "store/request_codec.h"

#include <cstdint>

#include "store/submission_store.h"

namespace cutor {
namespace {

constexpr uint64_t kCodecVersion = 1;

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
  size_t size = 64 + r.stdin_data.size();
  for (const auto& f : r.files) size += 10 + f.name.size() + f.content.size();
  for (const auto& a : r.args) size += 5 + a.size();
  for (const auto& [k, v] : r.env) size += 10 + k.size() + v.size();
  std::string out;
  out.reserve(size);
  put_varint(out, kCodecVersion);
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
  for (Stage s : kAllStages)
    for (std::string_view name : kLimitNames)
      put_varint(out, static_cast<uint64_t>(*limit_field(r.limits_for(s), name)));
  return out;
}

SubmissionRequest decode_request(std::string_view bytes) {
  Reader in(bytes);
  uint64_t version = in.varint("version");
  if (version != kCodecVersion) Reader::fail("version", "unknown record version");
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
  for (Stage s : kAllStages)
    for (std::string_view name : kLimitNames)
      *limit_field(r.limits[static_cast<int>(s)], name) = static_cast<int64_t>(in.varint("limit"));
  if (!in.at_end()) Reader::fail("record", "trailing bytes after the last limit");
  return r;
}

}  // namespace cutor
