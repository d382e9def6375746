#include "mesh/kafka/error.hpp"

#include <string>

namespace mesh::kafka {
namespace {

class KafkaCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "kafka"; }
  std::string message(int value) const override {
    return rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(value));
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const KafkaCategory instance;
  return instance;
}

error_code make_error(rd_kafka_resp_err_t err) noexcept {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  return {static_cast<int>(err), error_category()};
}

}  // namespace mesh::kafka
