#pragma once
// The rows of one statement in text format, owning its PGresult.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct pg_result;

namespace mesh::pg {

// Query parameters in text format, $1 first; std::nullopt is SQL NULL.
using Params = std::vector<std::optional<std::string>>;

// Query parameters from strings or optionals (nullopt is SQL NULL). Built in a function, not as
// a braced list in a coroutine: GCC 12 rejects a braced list whose backing array would live
// across a co_await ("array used as initializer").
template <class... Args>
Params params(Args&&... args) {
  return {std::optional<std::string>(std::forward<Args>(args))...};
}

class Result {
 public:
  Result() = default;  // no rows, no columns
  explicit Result(pg_result* result) noexcept : result_(result) {}

  int rows() const noexcept;
  int columns() const noexcept;
  // Rows inserted, updated, deleted (or selected) by the statement; 0 when not applicable.
  std::int64_t affected_rows() const noexcept;

  // Cells are views into this Result: they live as long as it does. Out-of-range rows or
  // columns throw std::out_of_range. get() reads NULL as ""; is_null() and get_optional()
  // tell the two apart.
  bool is_null(int row, int column) const;
  std::string_view get(int row, int column) const;
  std::optional<std::string_view> get_optional(int row, int column) const;

  // The index of a column by name (throws std::out_of_range when there is none).
  int column(std::string_view name) const;
  std::string_view get(int row, std::string_view column_name) const;
  std::optional<std::string_view> get_optional(int row, std::string_view column_name) const;

 private:
  struct Clear {
    void operator()(pg_result* result) const noexcept;
  };
  void check_cell(int row, int column) const;

  std::unique_ptr<pg_result, Clear> result_;
};

}  // namespace mesh::pg
