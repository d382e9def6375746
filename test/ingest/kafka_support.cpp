// The kafka tests' helpers (mock cluster, eventually(), metric()), compiled into this test
// program too: one implementation for both.
#include "../kafka/support.cpp"
