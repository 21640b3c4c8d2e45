// Provider answers over real HTTP on 127.0.0.1, through each adapter and a fallback chain: a
// tool-call answer is served at once, and usage and the provider's model reach the caller for
// the answer and for every failed attempt whose response reported them.
#include <string>

#include "catch.hpp"
#include "support.hpp"

using namespace itest;
using failover::error_kind;
using failover::testing::mock_provider;

namespace {

bool same(const std::optional<failover::token_usage>& u, long long prompt, long long completion,
          long long total) {
  return u && u->prompt == prompt && u->completion == completion && u->total == total;
}

}  // namespace

TEST_CASE("a tool-call answer is served on the first request, not retried") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt", {mock_reply::tool_call("get_weather", R"({"city": "Paris"})")});
    mock.script("backup", {mock_reply::answer("never")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}, {"backup", mock.base_url()}};
    const result_type r = make_chain(s)->run("weather in Paris?");
    REQUIRE(r);
    CHECK(r.served_by() == "gpt");
    CHECK(mock.count("gpt") == 1);
    CHECK(mock.count("backup") == 0);
    CHECK(r->content.empty());
    CHECK(r->finish_reason == "tool_calls");
    REQUIRE(r->tool_calls.size() == 1);
    CHECK(r->tool_calls[0].id == "call_mock_0");
    CHECK(r->tool_calls[0].name == "get_weather");
    CHECK(r->tool_calls[0].arguments == R"({"city": "Paris"})");
  }
}

TEST_CASE("usage and the provider's model: the answer's, and each failed attempt's") {
  const std::string error_body =
      R"({"error":{"message":"upstream busy","type":"server_error"},)"
      R"("usage":{"prompt_tokens":5,"completion_tokens":0,"total_tokens":5}})";
  const std::string unusable_200 =
      R"({"id":"c","model":"gpt","choices":[],)"
      R"("usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}})";
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt", {mock_reply::raw(503, error_body, "application/json"),
                        mock_reply::raw(200, unusable_200, "application/json")});
    mock.script("backup", {mock_reply::answer("from backup")});
    setup s;
    s.adapter = c;
    s.retry.max_attempts = 2;
    s.models = {{"gpt", mock.base_url()}, {"backup", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(r.served_by() == "backup");
    CHECK(r->model == "backup");  // the model the provider says answered
    CHECK(same(r->usage, 1, 1, 2));
    const auto& attempts = r.trace().attempts();
    REQUIRE(attempts.size() == 3);
    CHECK(attempts[0].error().kind == error_kind::server_error);
    CHECK(same(attempts[0].error().usage, 5, 0, 5));
    CHECK(attempts[1].error().kind == error_kind::invalid_response);
    CHECK(same(attempts[1].error().usage, 7, 3, 10));
    CHECK(attempts[2].ok);
    CHECK(mock.count("gpt") == 2);
  }
}
