// Asio's SSL support compiled once (BOOST_ASIO_SEPARATE_COMPILATION), for every module that
// speaks TLS (the ingester's feed client, the OIDC key fetcher).
#include <boost/asio/ssl/impl/src.hpp>
