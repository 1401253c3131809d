#include "runtimes/semver.h"

#include <charconv>
#include <vector>

namespace cutor {
namespace {

std::vector<std::string_view> split(std::string_view s, std::string_view sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const size_t at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + sep.size());
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

bool parse_number(std::string_view s, long& out) {
  if (s.empty() || s.size() > 9) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// A version with up to three parts, each a number or a wildcard ("x", "X", "*");
// `given` counts the numeric parts before the first wildcard or the end.
struct Partial {
  Version v;
  int given = 0;
};

std::optional<Partial> parse_partial(std::string_view s) {
  if (!s.empty() && s.front() == 'v') s.remove_prefix(1);
  Partial p;
  if (s.empty()) return p;
  const auto parts = split(s, ".");
  if (parts.size() > 3) return std::nullopt;
  bool wild = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i] == "x" || parts[i] == "X" || parts[i] == "*") {
      wild = true;
      continue;
    }
    if (wild || !parse_number(parts[i], p.v.parts[i])) return std::nullopt;
    p.given = static_cast<int>(i) + 1;
  }
  return p;
}

// The smallest version above every version matching the first `given` parts of `v`.
Version bump(Version v, int given) {
  if (given == 0) return Version{{1L << 30, 0, 0}};
  ++v.parts[given - 1];
  for (int i = given; i < 3; ++i) v.parts[i] = 0;
  return v;
}

std::expected<bool, std::string> comparator_holds(const Version& x, std::string_view c) {
  std::string_view op;
  for (std::string_view candidate : {">=", "<=", ">", "<", "=", "^", "~"}) {
    if (c.starts_with(candidate)) {
      op = candidate;
      break;
    }
  }
  const auto p = parse_partial(trim(c.substr(op.size())));
  if (!p) return std::unexpected("'" + std::string(c) + "' is not a version or comparator");
  const Version low = p->v;  // missing parts are zero
  const int g = p->given;
  if (op.empty() || op == "=") return x >= low && x < bump(low, g);
  if (op == ">=") return x >= low;
  if (op == "<") return x < low;
  if (op == ">") return g == 3 ? x > low : x >= bump(low, g);
  if (op == "<=") return g == 3 ? x <= low : x < bump(low, g);
  if (op == "~") return x >= low && x < bump(low, g >= 2 ? 2 : g);
  // "^": the left-most non-zero given part may not change.
  int keep = 0;
  while (keep < g - 1 && low.parts[keep] == 0) ++keep;
  return x >= low && x < bump(low, g == 0 ? 0 : keep + 1);
}

}  // namespace

std::optional<Version> parse_version(std::string_view text) {
  const auto parts = split(text, ".");
  if (parts.size() != 3) return std::nullopt;
  Version v;
  for (size_t i = 0; i < 3; ++i)
    if (!parse_number(parts[i], v.parts[i])) return std::nullopt;
  return v;
}

std::expected<bool, std::string> version_in_range(const Version& version, std::string_view range) {
  if (range.size() > 256) return std::unexpected("the range is over 256 characters");
  bool any = false;
  for (std::string_view set : split(range, "||")) {
    set = trim(set);
    bool all = true;
    for (std::string_view c : split(set, " ")) {
      if (c.empty() && !set.empty()) continue;  // repeated spaces
      auto holds = comparator_holds(version, c);
      if (!holds) return holds;
      all = all && *holds;
    }
    any = any || all;
  }
  return any;
}

}  // namespace cutor
