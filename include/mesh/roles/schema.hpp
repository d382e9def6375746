#pragma once
#include <span>

#include "mesh/pg/migrate.hpp"

namespace mesh::roles {

// The versioned schema every role applies at start (under an advisory lock, so replicas that
// start together apply each migration once).
std::span<const pg::Migration> migrations();

// Kafka topics of the task pipeline.
inline constexpr const char* kTasksPending = "tasks.pending";
inline constexpr const char* kTasksCompleted = "tasks.completed";
inline constexpr const char* kTasksDeadLetter = "tasks.dlq";

}  // namespace mesh::roles
