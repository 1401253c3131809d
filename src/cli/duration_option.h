// Durations on the command line (`serve --retention 7d`): a whole number and one unit,
// s, m, h or d ("30m", "12h", "7d", "2s").
#pragma once

#include <chrono>
#include <string>

namespace cutor {

// Throws std::invalid_argument saying what is expected when `text` is not such a
// duration or is zero.
std::chrono::milliseconds parse_duration(const std::string& text);

}  // namespace cutor
