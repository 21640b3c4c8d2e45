// The one translation unit of the separate-compilation tests that defines failover's compiled
// part: the tests in this binary are built with FAILOVER_SEPARATE_COMPILATION, and link only
// because this file gives them what the headers declared.
#include <failover/compiled.hpp>
