// failover/compiled.hpp in a build without FAILOVER_SEPARATE_COMPILATION: its functions would be
// defined twice, inline in every unit and here.
#include <failover/compiled.hpp>

int main() {
  return 0;
}
