// Must not compile: the callable needs two arguments, the retrier gives none.
#include <failover/failover.hpp>
int main() {
  failover::retrier r("m");
  (void)r.run([](int, int) { return 1; });
}
