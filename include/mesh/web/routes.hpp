#pragma once
// The web dashboard's routes: the page at / and its files under /assets/, served from the
// binary with entity tags, so a browser revalidates cheaply (304) instead of downloading again.
#include <string_view>

#include "mesh/http/message.hpp"
#include "mesh/http/router.hpp"
#include "mesh/web/assets.hpp"

namespace mesh::web {

// Registers GET / (index.html) and GET /assets/{name}; an unknown name answers 404.
void add_routes(http::Router& router);

// The answer for `asset` to `request`: 200 with the body, or 304 when the request's
// If-None-Match names the asset's entity tag.
http::Response serve(const Asset& asset, const http::Request& request);

// Whether an If-None-Match header value ("*", or a list of tags, weak or strong) matches `etag`
// by the weak comparison RFC 9110 prescribes for If-None-Match.
bool etag_matches(std::string_view if_none_match, std::string_view etag);

}  // namespace mesh::web
