#include "api/json_text.h"

#include <boost/json/serialize.hpp>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string_view>

namespace cutor {
namespace {

// `number` (one token of the serializer's output) in plain decimal notation when it is in
// exponent form; as it is otherwise (integers never are).
void append_number(std::string& out, std::string_view number) {
  if (number.find_first_of("eE") == std::string_view::npos) {
    out.append(number);
    return;
  }
  double value = 0;
  auto parsed = std::from_chars(number.data(), number.data() + number.size(), value);
  if (parsed.ec != std::errc() || !std::isfinite(value)) {
    out.append(number);  // cannot happen for what Boost.JSON writes; left as it was
    return;
  }
  char text[400];  // the longest fixed form of a double is 309 digits and a sign and point
  auto written = std::to_chars(text, text + sizeof text, value, std::chars_format::fixed);
  if (written.ec != std::errc()) {
    out.append(number);
    return;
  }
  out.append(text, written.ptr);
  // Still a double for the reader: 0.0 and 3.0, not 0 and 3.
  if (std::memchr(text, '.', static_cast<size_t>(written.ptr - text)) == nullptr) out += ".0";
}

}  // namespace

std::string to_json_text(const boost::json::value& value) {
  const std::string text = boost::json::serialize(value);
  std::string out;
  out.reserve(text.size() + 16);
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '"') {  // a string (a stage's output, maybe megabytes): up to its closing quote
      size_t end = text.find_first_of("\"\\", i + 1);
      while (end != std::string::npos && text[end] == '\\')
        end = text.find_first_of("\"\\", end + 2);
      if (end == std::string::npos) end = text.size() - 1;  // cannot happen: serialized
      out.append(text, i, end + 1 - i);
      i = end + 1;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      size_t end = i + 1;
      while (end < text.size() && text[end] != '\0' &&
             std::strchr("0123456789.eE+-", text[end]) != nullptr)
        ++end;
      append_number(out, std::string_view(text).substr(i, end - i));
      i = end;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

}  // namespace cutor
