#pragma once
#include <span>

#include "mesh/schema/migrations.hpp"

namespace mesh::roles {

using schema::migrations;

// Kafka topics of the task pipeline.
inline constexpr const char* kTasksPending = "tasks.pending";
inline constexpr const char* kTasksCompleted = "tasks.completed";
inline constexpr const char* kTasksDeadLetter = "tasks.dlq";

}  // namespace mesh::roles
