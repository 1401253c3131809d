#include "api/web_routes.h"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>

#include "api/json_text.h"
#include "api/submission_json.h"
#include "web/web_assets.h"

namespace cutor {
namespace http = boost::beast::http;
using Response = http::response<http::string_body>;

namespace {

constexpr std::string_view kOpenApiPath = "/api/v1/openapi.json";

Response error(int status, std::string code, std::string field, std::string what) {
  Response res{static_cast<http::status>(status), 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = to_json_text(
      api_error_to_json(make_api_error(status, std::move(code), std::move(field), what)));
  res.body() += '\n';
  return res;
}

}  // namespace

bool is_playground_path(std::string_view path) {
  return path != kOpenApiPath && find_web_asset(path) != nullptr;
}

std::optional<Response> web_route(const http::request<http::string_body>& req,
                                  std::string_view path) {
  const WebAsset* asset = find_web_asset(path);
  if (asset == nullptr) return std::nullopt;
  if (req.method() != http::verb::get) {
    Response res = error(405, "method_not_allowed", "", "allowed methods: GET");
    res.set(http::field::allow, "GET");
    return res;
  }
  return web_asset_response(*asset, req[http::field::if_none_match]);
}

}  // namespace cutor
