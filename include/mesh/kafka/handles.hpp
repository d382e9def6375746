#pragma once
// RAII holders for the librdkafka C handles used by this module. No raw handle outlives the
// object that owns it.
#include <memory>

#include <librdkafka/rdkafka.h>

namespace mesh::kafka {

namespace detail {
template <auto Destroy>
struct Deleter {
  template <class T>
  void operator()(T* handle) const noexcept {
    Destroy(handle);
  }
};
}  // namespace detail

using ConfPtr = std::unique_ptr<rd_kafka_conf_t, detail::Deleter<rd_kafka_conf_destroy>>;
using HandlePtr = std::unique_ptr<rd_kafka_t, detail::Deleter<rd_kafka_destroy>>;
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, detail::Deleter<rd_kafka_queue_destroy>>;
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t,
                                         detail::Deleter<rd_kafka_topic_partition_list_destroy>>;
using MessagePtr = std::unique_ptr<rd_kafka_message_t, detail::Deleter<rd_kafka_message_destroy>>;
using HeadersPtr = std::unique_ptr<rd_kafka_headers_t, detail::Deleter<rd_kafka_headers_destroy>>;
using ErrorPtr = std::unique_ptr<rd_kafka_error_t, detail::Deleter<rd_kafka_error_destroy>>;
using EventPtr = std::unique_ptr<rd_kafka_event_t, detail::Deleter<rd_kafka_event_destroy>>;

}  // namespace mesh::kafka
