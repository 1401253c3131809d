// The routes of the playground's files (served without auth: they hold no data; the page
// asks for a token and sends it with every API call) and of GET /api/v1/openapi.json
// (authenticated like the rest of /api/v1). The files themselves are src/web's.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <optional>
#include <string_view>

namespace cutor {

// Whether `path` is one of the playground's files ("/", "/assets/..."), which need no token.
bool is_playground_path(std::string_view path);

// The answer for a playground path or /api/v1/openapi.json: the file for GET (a query
// string is ignored), 405 for another method; nullopt for any other path.
std::optional<boost::beast::http::response<boost::beast::http::string_body>> web_route(
    const boost::beast::http::request<boost::beast::http::string_body>& req, std::string_view path);

}  // namespace cutor
