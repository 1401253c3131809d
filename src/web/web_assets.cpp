#include "web/web_assets.h"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <string>

namespace cutor {
namespace http = boost::beast::http;

namespace {

// Scripts only from the server itself: no inline script, no eval, no other origin (no
// CDN). Styles may also be inline: CodeMirror 6 puts its theme in a <style> element and
// sets style attributes (tab size, scroll padding); page text is only ever set as text.
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

// `if_none_match` is "*" or a list of (possibly weak) quoted tags: "a", W/"b".
bool etag_matches(std::string_view if_none_match, std::string_view etag) {
  return if_none_match == "*" || if_none_match.find(etag) != std::string_view::npos;
}

}  // namespace

const WebAsset* find_web_asset(std::string_view url_path) {
  for (const WebAsset& a : web_assets())
    if (a.url_path == url_path) return &a;
  return nullptr;
}

http::response<http::string_body> web_asset_response(const WebAsset& asset,
                                                     std::string_view if_none_match) {
  const bool fresh = !if_none_match.empty() && etag_matches(if_none_match, asset.etag);
  http::response<http::string_body> res{fresh ? http::status::not_modified : http::status::ok, 11};
  res.set(http::field::etag, asset.etag);
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Content-Security-Policy", kContentSecurityPolicy);
  res.set("Referrer-Policy", "no-referrer");
  res.set("X-Frame-Options", "DENY");
  if (fresh) return res;
  res.set(http::field::content_type, asset.content_type);
  res.body() = std::string(asset.body);
  res.prepare_payload();
  return res;
}

}  // namespace cutor
