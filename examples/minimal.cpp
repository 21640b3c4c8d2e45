// The README's example, with stand-ins for the HTTP calls: the primary is rate limited, the
// fallback answers. Build: the `failover_minimal` target.
#include <failover/failover.hpp>

#include <chrono>
#include <string>

using namespace std::chrono_literals;

// Stand-ins for your HTTP calls. Return the answer, or a failure built from what the client saw:
// here the primary has no API key configured (401, permanent), so the chain falls back at once.
failover::outcome<std::string> call_openai(const std::string&, const std::string&,
                                           failover::duration /*timeout*/) {
  return failover::failure::http(401, "invalid_api_key");
}
std::string call_anthropic(const std::string& prompt) {
  return "echo: " + prompt;
}

int main() {
  // --- README example ---
  failover::fallback_chain<std::string(const std::string&)> chain;
  chain.add("gpt-4o", [&](const failover::attempt_context& ctx, const std::string& prompt) {
    return call_openai("gpt-4o", prompt, ctx.timeout(30s));  // a value or a failure
  });
  chain.add("claude-sonnet", call_anthropic);  // tried when gpt-4o gives up

  auto answer = chain.run("Summarise this ticket");
  if (answer)
    fmt::print("{} (served by {})\n", *answer, answer.served_by());
  else
    fmt::print("failed: {}\n{}\n", answer.error(), answer.trace());
  // --- end ---

  fmt::print("\n{}\nfallback used: {}\n", answer.trace(), answer.fallback_used());
  return answer ? 0 : 1;
}
