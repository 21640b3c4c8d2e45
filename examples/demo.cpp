// A simulated flaky provider, in process and without network: the primary model is rate limited
// (with a server wait), then fails with a 503, then answers; a second request finds the primary
// down for good and falls back; a third is refused on policy grounds and is rerouted only because
// a content-policy fallback was opted into. Every step is printed from the call's trace.
#include <failover/failover.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Plays back a script of answers, one per call, then repeats the last one.
class scripted_model {
 public:
  explicit scripted_model(std::vector<failover::outcome<std::string>> script)
      : script_(std::move(script)) {}
  failover::outcome<std::string> operator()(const failover::attempt_context& ctx,
                                            const std::string& prompt) {
    fmt::print("    -> {} attempt {} (time left: {})\n", ctx.model, ctx.attempt,
               ctx.remaining ? failover::format_duration(*ctx.remaining) : "no deadline");
    auto answer = script_[std::min(next_++, script_.size() - 1)];
    if (answer) return answer.value() + " [" + prompt + "]";
    return answer;
  }

 private:
  std::vector<failover::outcome<std::string>> script_;
  std::size_t next_ = 0;
};

failover::failure rate_limited(const char* retry_after_ms) {
  return failover::failure::http(429, "rate_limit_exceeded", "Rate limit reached")
      .header("retry-after-ms", retry_after_ms);
}

void show(const char* title, const failover::result<std::string>& r) {
  fmt::print("\n  trace:\n");
  std::string lines = fmt::format("{}", r.trace());
  std::size_t start = 0;
  while (start <= lines.size()) {
    const std::size_t end = lines.find('\n', start);
    fmt::print("    {}\n", lines.substr(start, end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (r) {
    fmt::print("  {}: served by {}{}{}: \"{}\"\n", title, r.served_by(),
               r.fallback_used() ? " (FALLBACK)" : "",
               r.trace().policy_rerouted() ? " (REROUTED after a content-policy refusal)" : "", *r);
  } else {
    fmt::print("  {}: FAILED ({}): {}\n", title, r.stop(), r.error());
  }
}

}  // namespace

int main() {
  // Short waits so the demo runs in about a second; real defaults start at 1 s.
  const failover::retry_options retry{/*max_attempts=*/4, /*max_read_timeout_retries=*/1,
                                      /*max_server_wait=*/2s};
  const failover::backoff_options backoff{/*base=*/50ms, /*multiplier=*/2.0, /*cap=*/400ms,
                                          failover::jitter::full};
  failover::chain_options bounds;
  bounds.deadline = 5s;

  fmt::print("1. The primary is rate limited (server asks 100 ms), then 503, then answers.\n");
  {
    failover::fallback_chain<std::string(const std::string&)> chain(bounds);
    chain.add("gpt-4o",
              scripted_model({rate_limited("100"),
                              failover::failure::http(503, "", "Service Unavailable"),
                              std::string("Paris is the capital of France.")}),
              failover::role::standard, retry, failover::exponential_backoff<>(backoff));
    chain.add("claude-sonnet", scripted_model({std::string("Paris.")}));
    show("request 1", chain.run("capital of France?"));
  }

  fmt::print("\n2. The primary stays overloaded: retries run out and the fallback answers.\n");
  {
    failover::fallback_chain<std::string(const std::string&)> chain(bounds);
    chain.add("gpt-4o", scripted_model({failover::failure::http(529, "overloaded_error")}),
              failover::role::standard, retry, failover::exponential_backoff<>(backoff));
    chain.add("claude-sonnet", scripted_model({std::string("Paris.")}));
    show("request 2", chain.run("capital of France?"));
  }

  fmt::print(
      "\n3. A refusal on policy grounds is rerouted only to an opted-in policy fallback,\n"
      "   and the result says so; an input too long goes to a context-window fallback.\n");
  {
    failover::fallback_chain<std::string(const std::string&)> chain(bounds);
    chain.add("gpt-4o", scripted_model({failover::failure::http(400, "content_policy_violation")}));
    chain.add("claude-sonnet", scripted_model({std::string("(never called)")}));
    chain.add("policy-reviewed-model", scripted_model({std::string("A careful answer.")}),
              failover::role::content_policy);
    show("request 3", chain.run("a sensitive question"));

    failover::fallback_chain<std::string(const std::string&)> long_input(bounds);
    long_input.add("gpt-4o",
                   scripted_model({failover::failure::http(400, "context_length_exceeded")}));
    long_input.add("gpt-4o-long", scripted_model({std::string("A summary of the long text.")}),
                   failover::role::context_window);
    show("request 4", long_input.run("a very long document"));
  }

  fmt::print("\n4. A permanent error (401) is never retried; without a fallback the call fails.\n");
  {
    failover::fallback_chain<std::string(const std::string&)> chain(bounds);
    chain.add("gpt-4o", scripted_model({failover::failure::http(401, "invalid_api_key")}));
    show("request 5", chain.run("hello"));
  }
  return 0;
}
