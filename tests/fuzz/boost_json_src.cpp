// Boost.JSON compiled into the libFuzzer binary instead of linked from Debian's shared
// libboost_json: its parser is then instrumented, so coverage feedback guides libFuzzer
// through JSON syntax and ASan/UBSan see its memory accesses. Only fuzz_request uses it.
#include <boost/json/src.hpp>
