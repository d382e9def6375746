#pragma once
// The versioned schema of the whole product. Every role applies it at start (under an advisory
// lock, so replicas that start together apply each migration once); tests and benchmarks of
// single modules apply exactly the same migrations.
#include <span>

#include "mesh/pg/migrate.hpp"

namespace mesh::schema {

std::span<const pg::Migration> migrations();

}  // namespace mesh::schema
