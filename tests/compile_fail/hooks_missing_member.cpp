// Must not compile: a Hooks policy written from scratch that misses on_skip.
#include <failover/failover.hpp>
struct my_hooks {
  void on_attempt_start(const failover::attempt_started&) const {}
  void on_attempt_end(const failover::attempt_ended&) const {}
  void on_retry(const failover::retry_scheduled&) const {}
  void on_fallback(const failover::fallback_taken&) const {}
  void on_give_up(const failover::gave_up&) const {}
};
struct my_policies : failover::default_policies {
  using hooks = my_hooks;
};
int main() {
  failover::basic_retrier<my_policies> r("m");
}
