// The text of a JSON answer: boost::json::serialize, with every number that is a double
// written in plain decimal notation ("time": 0.000313, not 3.13E-4; 0.0, not 0E0), as the
// SPEC's examples show it. Boost.JSON 1.81 always writes doubles in exponent form, which is
// valid JSON but reads badly and surprises clients that print or compare the field.
#pragma once

#include <boost/json/value.hpp>
#include <string>

namespace cutor {

std::string to_json_text(const boost::json::value& value);

}  // namespace cutor
