#pragma once
// The dashboard's files (web/index.html, app.js, style.css and the charting library), compiled
// into the binary at build time by cmake/web_assets.cmake.
#include <span>
#include <string_view>

namespace mesh::web {

struct Asset {
  std::string_view name;  // "app.js": the file name under /assets/
  std::string_view body;
  std::string_view etag;  // a strong entity tag, quotes included: a hash of the body
};

// Every embedded file, in a fixed order. Defined in the generated web_assets.cpp.
std::span<const Asset> assets();

// The embedded file called `name`; null when there is none.
const Asset* find_asset(std::string_view name);

// The Content-Type for a file name, by its extension.
std::string_view content_type_for(std::string_view name);

}  // namespace mesh::web
