// Asio's SSL support compiled once (BOOST_ASIO_SEPARATE_COMPILATION): the ingester is the only
// module that speaks TLS.
#include <boost/asio/ssl/impl/src.hpp>
