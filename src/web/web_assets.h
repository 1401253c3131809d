// The playground's files (web/, bundled by esbuild) and the OpenAPI document
// (docs/openapi.json), built into the binary by cmake/embed_files.cmake, and the headers
// every one of them is answered with.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <span>
#include <string_view>

namespace cutor {

struct WebAsset {
  std::string_view url_path;      // "/", "/assets/app.js", "/api/v1/openapi.json"
  std::string_view content_type;  // from the file's extension
  std::string_view body;
  std::string_view etag;  // quoted, strong: the start of the file's SHA-256
};

// Every embedded file (generated).
std::span<const WebAsset> web_assets();

// The file served at `url_path`, or nullptr.
const WebAsset* find_web_asset(std::string_view url_path);

// The answer to a GET of `asset`: 200 with the body, or 304 when
// `if_none_match` names its ETag. Always no-cache (revalidated, cheap with the ETag: a new
// binary may serve new files at the same URL), nosniff, and a Content-Security-Policy that
// allows scripts, styles and connections only from the server itself (no inline script).
boost::beast::http::response<boost::beast::http::string_body> web_asset_response(
    const WebAsset& asset, std::string_view if_none_match);

}  // namespace cutor
