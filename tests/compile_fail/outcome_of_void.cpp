// Must not compile: an outcome carries a value; a call with no answer returns a bool instead.
#include <failover/failover.hpp>
int main() {
  failover::outcome<void>* o = nullptr;
  (void)sizeof(*o);
}
