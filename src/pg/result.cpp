#include "mesh/pg/result.hpp"

#include <charconv>
#include <stdexcept>

#include <libpq-fe.h>

#include "mesh/pg/error.hpp"

namespace mesh::pg {

void Result::Clear::operator()(pg_result* result) const noexcept { PQclear(result); }

int Result::rows() const noexcept { return result_ ? PQntuples(result_.get()) : 0; }

int Result::columns() const noexcept { return result_ ? PQnfields(result_.get()) : 0; }

std::int64_t Result::affected_rows() const noexcept {
  if (!result_) return 0;
  const std::string_view text = PQcmdTuples(result_.get());
  std::int64_t count = 0;
  std::from_chars(text.data(), text.data() + text.size(), count);
  return count;
}

void Result::check_cell(int row, int column) const {
  if (row < 0 || row >= rows() || column < 0 || column >= columns()) {
    throw std::out_of_range("pg::Result: no cell (" + std::to_string(row) + ", " +
                            std::to_string(column) + ") in " + std::to_string(rows()) + "x" +
                            std::to_string(columns()));
  }
}

bool Result::is_null(int row, int column) const {
  check_cell(row, column);
  return PQgetisnull(result_.get(), row, column) != 0;
}

std::string_view Result::get(int row, int column) const {
  check_cell(row, column);
  return {PQgetvalue(result_.get(), row, column),
          static_cast<std::size_t>(PQgetlength(result_.get(), row, column))};
}

std::optional<std::string_view> Result::get_optional(int row, int column) const {
  if (is_null(row, column)) return std::nullopt;
  return get(row, column);
}

int Result::column(std::string_view name) const {
  // PQfnumber folds unquoted names to lower case, as SQL does.
  const int index = result_ ? PQfnumber(result_.get(), std::string(name).c_str()) : -1;
  if (index < 0) throw std::out_of_range("pg::Result: no column named " + std::string(name));
  return index;
}

std::string_view Result::get(int row, std::string_view column_name) const {
  return get(row, column(column_name));
}

std::optional<std::string_view> Result::get_optional(int row, std::string_view column_name) const {
  return get_optional(row, column(column_name));
}

}  // namespace mesh::pg
