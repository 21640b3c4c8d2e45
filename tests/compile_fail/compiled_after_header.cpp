// failover/compiled.hpp after another failover header: that header declared its functions without
// their definitions, and #pragma once keeps them out of this unit for good.
#define FAILOVER_SEPARATE_COMPILATION
#include <failover/fallback_chain.hpp>
//
#include <failover/compiled.hpp>

int main() {
  return 0;
}
