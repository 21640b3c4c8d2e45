// Must not compile: an exception mapping that does not take the exception it maps.
#include <failover/failover.hpp>
#include <stdexcept>
int main() {
  failover::classifier c;
  c.on_exception<std::runtime_error>([](int) { return failover::failure::http(503); });
}
