// Byte-string encodings the API speaks: UTF-8 sanitising, strict base64, strict hex.
//
// Submitted file contents arrive as utf8, base64 or hex; stage output leaves either as
// UTF-8 with U+FFFD replacements or, on request, as base64 of the exact bytes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cutor {

// Returns `bytes` with every ill-formed UTF-8 sequence replaced by U+FFFD, one
// replacement per maximal ill-formed subpart (Unicode's recommended practice, the
// WHATWG decoder's behaviour): overlong forms, surrogates (U+D800..U+DFFF), code points
// above U+10FFFF, stray continuation bytes and truncated sequences are each replaced.
// Well-formed input, NUL bytes included, is returned unchanged.
std::string sanitize_utf8(std::string_view bytes);

// True when `bytes` is well-formed UTF-8.
bool is_valid_utf8(std::string_view bytes);

// Standard base64 (RFC 4648 section 4) with '=' padding.
std::string base64_encode(std::string_view bytes);

// Strict decoding: standard alphabet only, length a multiple of 4, '=' only as the last
// one or two characters, unused bits of the last group zero (so every byte string has
// exactly one accepted encoding), no whitespace. Returns nullopt otherwise.
std::optional<std::string> base64_decode(std::string_view text);

// Decodes an even-length string of hex digits (either case). Returns nullopt otherwise.
std::optional<std::string> hex_decode(std::string_view text);

}  // namespace cutor
