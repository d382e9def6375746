#pragma once
// librdkafka error codes as boost::system::error_code values, so hot-path failures travel as
// values and read well in logs ("Local: Message timed out").
#include <librdkafka/rdkafka.h>

#include <boost/system/error_category.hpp>

#include "mesh/core/asio.hpp"

namespace mesh::kafka {

// Category "kafka": the value is an rd_kafka_resp_err_t, the message rd_kafka_err2str().
const boost::system::error_category& error_category() noexcept;

// Success for RD_KAFKA_RESP_ERR_NO_ERROR, otherwise an error of error_category().
error_code make_error(rd_kafka_resp_err_t err) noexcept;

}  // namespace mesh::kafka
