// The one translation unit that compiles Asio, Beast, JSON and URL; every other file only
// includes their declarations (BOOST_*_SEPARATE_COMPILATION), which keeps builds fast.
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
#include <boost/json/src.hpp>
#include <boost/url/src.hpp>
