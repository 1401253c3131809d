#include "executor/project_archive.h"

#include <string>

namespace cutor {
namespace {

// POSIX sh with unzip's listing modes (-Z1 names, -Z long lines whose first letter is the
// entry's type). Every check reads the central directory that unzip itself extracts from.
// Names are compared line by line: a name holding a newline can only be refused more often.
constexpr std::string_view kScript = R"(z=cutor.zip
list=$(unzip -Z1 "$z") || exit $?
n=$(printf '%s\n' "$list" | wc -l)
if [ "$n" -gt {max} ]; then
  echo "cutor: cutor.zip has $n entries, more than {max}" >&2; exit 3
fi
bad=$(printf '%s\n' "$list" | grep -m1 -E '^/|(^|/)\.\.(/|$)')
if [ -n "$bad" ]; then
  echo "cutor: cutor.zip entry '$bad' is outside the workspace" >&2; exit 3
fi
links=$(unzip -Z "$z" | grep -c '^l')
if [ "$links" -gt 0 ]; then
  echo "cutor: cutor.zip has $links symbolic link(s); links are refused" >&2; exit 3
fi
printf '%s\n' "$list" | while IFS= read -r name; do
  name=${name%/}
  if [ -e "$name" ] && ! [ -d "$name" ] || [ "$name" = "$z" ]; then
    echo "cutor: cutor.zip entry '$name' would replace a file already there" >&2; exit 3
  fi
done || exit 3
unzip -qq -n "$z"
s=$?
# unzip killed (SIGXFSZ at the file size limit...): the stage ends by that signal too.
if [ "$s" -gt 128 ]; then kill -$((s - 128)) $$; fi
if [ "$s" -ne 0 ]; then exit "$s"; fi
rm -f "$z"
)";

}  // namespace

std::vector<std::string> unpack_argv() {
  std::string script(kScript);
  const std::string max = std::to_string(kMaxArchiveEntries);
  for (size_t at; (at = script.find("{max}")) != std::string::npos;) script.replace(at, 5, max);
  return {"sh", "-c", std::move(script), "cutor-unpack"};
}

}  // namespace cutor
