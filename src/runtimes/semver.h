// Semantic versions and the range syntax Piston and npm use to pick one ("3", "3.x",
// "^3.10", "~1.2.3", ">=3.9 <4", "1.x || 2.x", "*").
#pragma once

#include <array>
#include <compare>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

namespace cutor {

// MAJOR.MINOR.PATCH, each a decimal number (no pre-release or build suffix).
struct Version {
  std::array<long, 3> parts{};
  auto operator<=>(const Version&) const = default;
};

std::optional<Version> parse_version(std::string_view text);

// Whether `version` is in `range`. An ill-formed range is an error naming what is wrong.
// Supported: "*" / "" / "x", partial versions ("3", "3.11", "3.x"), comparators
// (=, <, <=, >, >=) joined by spaces (all must hold), "^" and "~", and "||" between sets.
std::expected<bool, std::string> version_in_range(const Version& version, std::string_view range);

}  // namespace cutor
