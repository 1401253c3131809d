#include "cli/duration_option.h"

#include <stdexcept>

namespace cutor {

std::chrono::milliseconds parse_duration(const std::string& text) {
  const auto bad = [&](const std::string& why) {
    return std::invalid_argument("'" + text + "' is not a duration: " + why +
                                 " (a whole number and a unit s, m, h or d, e.g. 7d, 12h, 30m, "
                                 "2s)");
  };
  if (text.size() < 2) throw bad("too short");
  const std::string digits = text.substr(0, text.size() - 1);
  // At most 10 digits: 9,999,999,999 days still fits in int64 milliseconds.
  if (digits.size() > 10 || digits.find_first_not_of("0123456789") != std::string::npos)
    throw bad("the number must be whole digits");
  int64_t unit_ms = 0;
  switch (text.back()) {
    case 's':
      unit_ms = 1000;
      break;
    case 'm':
      unit_ms = 60 * 1000;
      break;
    case 'h':
      unit_ms = 3600 * 1000;
      break;
    case 'd':
      unit_ms = 86400 * 1000;
      break;
    default:
      throw bad("unknown unit");
  }
  const int64_t n = std::stoll(digits);
  if (n == 0) throw bad("it must be more than zero");
  return std::chrono::milliseconds(n * unit_ms);
}

}  // namespace cutor
