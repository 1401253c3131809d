// Runs the fuzz target without libFuzzer, so g++ builds (with or without
// -fsanitize=address,undefined) can use it:
//
//   fuzz_request_replay DIR_OR_FILE...                  every input once (regression test)
//   fuzz_request_replay --mutate N [--seed S] DIR...    also N random mutants of the inputs
//
// The mutants (byte flips, inserted/erased/duplicated ranges, splices of two inputs,
// interesting bytes) give a blind but real short fuzz run where libFuzzer is not
// available. The seed is printed first: a run that aborts is replayed exactly with the
// same --seed and --mutate.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

bool read_file(const std::filesystem::path& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
    return false;
  }
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

void run(const std::string& bytes) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

std::string mutate(const std::vector<std::string>& inputs, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  std::string s = inputs[pick(inputs.size())];
  static constexpr std::string_view kInteresting[] = {"\"",
                                                      "\\",
                                                      "\\u0000",
                                                      "\\ud800",
                                                      "..",
                                                      "/",
                                                      "\r\n",
                                                      "\r\n\r\n",
                                                      "{}",
                                                      "[]",
                                                      "0",
                                                      "-1",
                                                      "18446744073709551616",
                                                      "1e309",
                                                      "\xff",
                                                      "\xc0\x80",
                                                      "\"run.sh\"",
                                                      "\"base64\"",
                                                      "\"hex\"",
                                                      "chunked",
                                                      ";",
                                                      ":",
                                                      "\x00"};
  const int steps = 1 + static_cast<int>(pick(8));
  for (int i = 0; i < steps; ++i) {
    switch (pick(7)) {
      case 0:  // flip a bit
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << pick(8));
        break;
      case 1:  // random byte
        if (!s.empty()) s[pick(s.size())] = static_cast<char>(rng());
        break;
      case 2: {  // erase a range
        if (s.empty()) break;
        const size_t at = pick(s.size());
        s.erase(at, 1 + pick(std::min<size_t>(64, s.size() - at)));
        break;
      }
      case 3: {  // duplicate a range
        if (s.empty()) break;
        const size_t at = pick(s.size());
        const std::string piece = s.substr(at, 1 + pick(64));
        s.insert(pick(s.size() + 1), piece);
        break;
      }
      case 4: {  // insert an interesting token
        const auto tok = kInteresting[pick(std::size(kInteresting))];
        s.insert(pick(s.size() + 1), tok.data(), tok.size());
        break;
      }
      case 5: {  // splice with another input
        const std::string& other = inputs[pick(inputs.size())];
        s = s.substr(0, pick(s.size() + 1)) + other.substr(pick(other.size() + 1));
        break;
      }
      case 6:  // truncate
        s.resize(pick(s.size() + 1));
        break;
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  long mutants = 0;
  uint64_t seed = std::random_device{}();
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg == "--mutate" && i + 1 < argc) {
      mutants = std::strtol(argv[++i], nullptr, 10);
      continue;
    }
    if (arg == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
      continue;
    }
    const fs::path path(argv[i]);
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<fs::path> found;
      for (const auto& entry : fs::recursive_directory_iterator(path))
        if (entry.is_regular_file()) found.push_back(entry.path());
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(path);
    }
  }
  std::vector<std::string> inputs;
  for (const auto& f : files) {
    std::string bytes;
    if (!read_file(f, bytes)) return 2;
    run(bytes);
    inputs.push_back(std::move(bytes));
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "replay: no input given\n");
    return 1;
  }
  std::printf("replay: seed %llu\n", static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  std::mt19937_64 rng(seed);
  for (long i = 0; i < mutants; ++i) {
    run(mutate(inputs, rng));
  }
  std::printf("replay: %zu inputs, %ld mutants (seed %llu), no crash\n", inputs.size(), mutants,
              static_cast<unsigned long long>(seed));
  return 0;
}
