// failover-chat end to end: the binary is started against the mock provider (in this process, on
// 127.0.0.1) for every fault kind, and the tests read its exit code, its JSON trace and what the
// server saw.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "catch.hpp"
#include "support.hpp"

using namespace itest;
using failover::testing::mock_provider;
using failover::testing::refused_port;
using failover::testing::unanswered_port;
using nlohmann::json;

namespace {

// Millisecond backoff so that every run is quick; each test adds what it is about.
std::vector<std::string> fast(const mock_provider& mock, std::vector<std::string> more) {
  std::vector<std::string> args{"--base-url",           mock.base_url(),
                                "--base-delay-ms",      "1",
                                "--max-delay-ms",       "5",
                                "--max-attempts",       "3",
                                "--connect-timeout-ms", "500",
                                "--read-timeout-ms",    "3000",
                                "--trace-json"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

run_result chat(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  return run_program(FAILOVER_CHAT_PATH, args, env);
}

json parse_out(const run_result& r) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  const json j = json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

// A temporary config file, removed at the end of the test.
struct config_file {
  explicit config_file(const std::string& text) {
    char name[] = "/tmp/failover-itest-config-XXXXXX";
    const int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    close(fd);
    path = name;
    std::ofstream(path) << text;
  }
  ~config_file() { std::remove(path.c_str()); }
  std::string path;
};

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

}  // namespace

TEST_CASE("429 with Retry-After in seconds: waits, retries, answers") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::error(429, "rate_limit_exceeded").with_header("Retry-After", "1"),
                      mock_reply::answer("hello")});
  const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
  REQUIRE(r.exit_code == 0);
  const json j = parse_out(r);
  CHECK(j["answer"] == "hello");
  CHECK(j["served_by"] == "gpt");
  CHECK(j["fallback_used"] == false);
  CHECK(j["error"].is_null());
  REQUIRE(j["attempts"].size() == 2);
  CHECK(j["attempts"][0]["status"] == 429);
  CHECK(j["attempts"][0]["kind"] == "rate_limited");
  CHECK(j["attempts"][0]["wait_reason"] == "server");
  CHECK(j["attempts"][0]["wait_ms"].get<double>() >= 1000.0);
  CHECK(j["attempts"][1]["kind"] == "ok");
  // The wait by failover-chat's own clock; the server's log (another process) only shows that the
  // retry did not come at once, with a margin for a loaded machine.
  CHECK(j["attempts"][1]["start_ms"].get<double>() - j["attempts"][0]["start_ms"].get<double>() >=
        1000.0);
  const auto seen = mock.requests("gpt");
  REQUIRE(seen.size() == 2);
  CHECK(gap_ms(seen[0], seen[1]) >= 500);
}

TEST_CASE("429 with retry-after-ms and with an HTTP-date") {
  {
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(429).with_header("retry-after-ms", "120"),
                        mock_reply::answer("hello")});
    const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
    REQUIRE(r.exit_code == 0);
    const json j = parse_out(r);
    CHECK(j["attempts"][0]["wait_reason"] == "server");
    // A 120 ms gap is judged by failover-chat's own clock alone.
    CHECK(j["attempts"][0]["wait_ms"].get<double>() >= 120.0);
    CHECK(j["attempts"][1]["start_ms"].get<double>() - j["attempts"][0]["start_ms"].get<double>() >=
          120.0);
    CHECK(mock.count("gpt") == 2);
  }
  {
    mock_provider mock;
    mock.script("gpt",
                {mock_reply::error(429).with_retry_after_date(2s), mock_reply::answer("hello")});
    const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
    REQUIRE(r.exit_code == 0);
    CHECK(parse_out(r)["attempts"][0]["wait_reason"] == "server");
    const auto seen = mock.requests("gpt");
    REQUIRE(seen.size() == 2);
    CHECK(gap_ms(seen[0], seen[1]) >= 1000 - lag_ms);
  }
}

TEST_CASE("429 without Retry-After, and a Retry-After beyond --max-server-wait-ms") {
  {
    mock_provider mock;
    mock.script("gpt",
                {mock_reply::error(429, "rate_limit_exceeded"), mock_reply::answer("hello")});
    const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
    REQUIRE(r.exit_code == 0);
    CHECK(parse_out(r)["attempts"][0]["wait_reason"] == "backoff");
    CHECK(mock.count("gpt") == 2);
  }
  {
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(429).with_header("Retry-After", "120")});
    mock.script("backup", {mock_reply::answer("from backup")});
    const auto r = chat(
        fast(mock, {"--model", "gpt", "--model", "backup", "--max-server-wait-ms", "1000", "hi"}));
    REQUIRE(r.exit_code == 0);
    const json j = parse_out(r);
    CHECK(j["served_by"] == "backup");
    CHECK(j["fallback_used"] == true);
    CHECK(j["attempts"][0]["gave_up"] == "server wait too long");
    CHECK(mock.count("gpt") == 1);
  }
}

TEST_CASE("500, 502, 503, 504 and 529 are retried") {
  for (int status : {500, 502, 503, 504, 529}) {
    INFO("HTTP " << status);
    mock_provider mock;
    mock.script("gpt", {status == 529 ? mock_reply::anthropic_error(529, "overloaded_error")
                                      : mock_reply::error(status),
                        mock_reply::answer("hello")});
    const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
    REQUIRE(r.exit_code == 0);
    const json j = parse_out(r);
    CHECK(j["attempts"][0]["status"] == status);
    CHECK(j["attempts"][0]["kind"] == (status == 529 ? "overloaded" : "server_error"));
    CHECK(mock.count("gpt") == 2);
  }
}

TEST_CASE("connection refused and connect timeout, with per-model base URLs from --config") {
  mock_provider mock;
  refused_port down;
  unanswered_port silent;
  mock.script("backup", {mock_reply::answer("from backup")});
  config_file cfg(json({{"models", {"refused", "silent", "backup"}},
                        {"base_url", mock.base_url()},
                        {"max_attempts", 2},
                        {"base_delay_ms", 1},
                        {"max_delay_ms", 5},
                        {"connect_timeout_ms", 50},
                        {"model_list",
                         {{{"model_name", "refused"}, {"base_url", down.base_url()}},
                          {{"model_name", "silent"}, {"base_url", silent.base_url()}}}}})
                      .dump());
  const auto r = chat({"--config", cfg.path, "--trace-json", "hi"});
  REQUIRE(r.exit_code == 0);
  const json j = parse_out(r);
  CHECK(j["served_by"] == "backup");
  REQUIRE(j["attempts"].size() == 5);
  CHECK(j["attempts"][0]["kind"] == "connection_error");
  CHECK(j["attempts"][1]["kind"] == "connection_error");
  CHECK(j["attempts"][2]["kind"] == "connect_timeout");
  CHECK(j["attempts"][3]["kind"] == "connect_timeout");
  CHECK(j["attempts"][4]["kind"] == "ok");
  CHECK(mock.requests().size() == 1);  // only the fallback reached a server
}

TEST_CASE("read timeout: the fallback takes over at once") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::answer("too late").after(3000ms)});
  mock.script("backup", {mock_reply::answer("from backup")});
  const auto r = chat(fast(mock, {"--model", "gpt", "--model", "backup", "--read-timeout-ms", "100",
                                  "--max-attempts", "5", "hi"}));
  REQUIRE(r.exit_code == 0);
  const json j = parse_out(r);
  CHECK(j["served_by"] == "backup");
  REQUIRE(j["attempts"].size() == 2);
  CHECK(j["attempts"][0]["kind"] == "read_timeout");
  CHECK(j["attempts"][0]["gave_up"] == "read timeout, a fallback takes over");
  const auto seen = mock.requests();
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].model == "backup");
}

TEST_CASE("a reset mid-response and a body that is not JSON are retried") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::dropped(), mock_reply::raw(200, "<html>proxy</html>"),
                      mock_reply::answer("hello")});
  const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
  REQUIRE(r.exit_code == 0);
  const json j = parse_out(r);
  REQUIRE(j["attempts"].size() == 3);
  CHECK(j["attempts"][0]["kind"] == "connection_error");
  CHECK(j["attempts"][1]["kind"] == "invalid_response");
  CHECK(j["answer"] == "hello");
  CHECK(mock.count("gpt") == 3);
}

TEST_CASE("400 ends the chain with exit code 1 and a one-line reason") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::error(400, "", "bad field", "invalid_request_error")});
  mock.script("backup", {mock_reply::answer("never")});
  const auto r = chat(fast(mock, {"--model", "gpt", "--model", "backup", "hi"}));
  CHECK(r.exit_code == 1);
  const json j = parse_out(r);
  CHECK(j["answer"].is_null());
  CHECK(j["served_by"].is_null());
  CHECK(j["error"]["kind"] == "bad_request");
  CHECK(j["error"]["stop"] == "bad request ends the chain");
  CHECK(last_line(r.err).rfind("failover-chat: failed after 1 attempt (bad request ends the chain)",
                               0) == 0);
  CHECK(mock.count("backup") == 0);
}

TEST_CASE("401, 403 and 404 fall back without a retry") {
  for (int status : {401, 403, 404}) {
    INFO("HTTP " << status);
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(status)});
    mock.script("backup", {mock_reply::answer("from backup")});
    const auto r = chat(fast(mock, {"--model", "gpt", "--model", "backup", "hi"}));
    REQUIRE(r.exit_code == 0);
    const json j = parse_out(r);
    CHECK(j["served_by"] == "backup");
    CHECK(j["attempts"][0]["status"] == status);
    CHECK(mock.count("gpt") == 1);
  }
}

TEST_CASE("context_length_exceeded with and without --context-fallback") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::error(400, "context_length_exceeded", "too long")});
  mock.script("gpt-long", {mock_reply::answer("summary")});
  auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
  CHECK(r.exit_code == 1);
  CHECK(parse_out(r)["error"]["kind"] == "context_window");
  CHECK(mock.count("gpt") == 1);

  r = chat(fast(mock, {"--model", "gpt", "--context-fallback", "gpt-long", "hi"}));
  REQUIRE(r.exit_code == 0);
  CHECK(parse_out(r)["served_by"] == "gpt-long");
  CHECK(mock.count("gpt") == 2);
  CHECK(mock.count("gpt-long") == 1);
}

TEST_CASE("content_policy_violation and a 200 refusal, with and without --policy-fallback") {
  for (bool refusal : {false, true}) {
    INFO((refusal ? "200 refusal" : "content_policy_violation"));
    mock_provider mock;
    mock.script("gpt", {refusal ? mock_reply::refusal()
                                : mock_reply::error(400, "content_policy_violation", "refused")});
    mock.script("backup", {mock_reply::answer("never")});
    mock.script("reviewed", {mock_reply::answer("careful answer")});
    auto r = chat(fast(mock, {"--model", "gpt", "--model", "backup", "hi"}));
    CHECK(r.exit_code == 1);
    CHECK(parse_out(r)["error"]["kind"] == "content_policy");
    CHECK(mock.count("backup") == 0);

    r = chat(
        fast(mock, {"--model", "gpt", "--model", "backup", "--policy-fallback", "reviewed", "hi"}));
    REQUIRE(r.exit_code == 0);
    const json j = parse_out(r);
    CHECK(j["served_by"] == "reviewed");
    CHECK(j["policy_rerouted"] == true);
    CHECK(mock.count("backup") == 0);
    CHECK(mock.count("gpt") == 2);
  }
}

TEST_CASE("the hop limit (--max-hops) and the call deadline (--deadline-ms)") {
  {
    mock_provider mock;
    for (const char* m : {"a", "b", "c"}) mock.script(m, {mock_reply::error(503)});
    const auto r = chat(fast(mock, {"--model", "a", "--model", "b", "--model", "c", "--max-hops",
                                    "2", "--max-attempts", "1", "hi"}));
    CHECK(r.exit_code == 1);
    CHECK(parse_out(r)["error"]["stop"] == "hop limit");
    CHECK(mock.count("a") == 1);
    CHECK(mock.count("b") == 1);
    CHECK(mock.count("c") == 0);
  }
  {
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(503)});
    const auto r = chat(
        fast(mock, {"--model", "gpt", "--max-attempts", "1000", "--base-delay-ms", "30",
                    "--max-delay-ms", "30", "--jitter", "none", "--deadline-ms", "1500", "hi"}));
    CHECK(r.exit_code == 1);
    const json j = parse_out(r);
    CHECK(j["error"]["kind"] == "deadline_exceeded");
    // The last attempt's facts are kept: its 503, or none when the deadline cut that attempt
    // short (on a loaded machine the last one may start with milliseconds left).
    REQUIRE_FALSE(j["attempts"].empty());
    CHECK(j["error"]["status"] == j["attempts"].back()["status"]);
    CHECK(j["attempts"].front()["status"] == 503);
    // No attempt starts after the deadline by failover-chat's clock; the server saw none long
    // after.
    for (const auto& a : j["attempts"]) CHECK(a["start_ms"].get<double>() < 1500.0);
    const auto seen = mock.requests();
    REQUIRE(seen.size() >= 2);
    for (const auto& q : seen) CHECK(gap_ms(seen[0], q) < 1500 + 1000);
    CHECK(seen.size() <= 51);  // 30 ms apart within 1.5 s, not the 1000 attempts allowed
  }
}

TEST_CASE("the key is sent as a bearer token and never printed") {
  const std::string key = "plain-key-without-a-known-prefix-42";  // only the CLI can mask this one
  mock_provider mock;
  mock.script("gpt",
              {mock_reply::error(401, "invalid_api_key", "Incorrect API key provided: " + key)});
  mock.script("backup", {mock_reply::answer("from backup")});
  for (bool as_json : {true, false}) {
    std::vector<std::string> args = fast(mock, {"--model", "gpt", "hi"});
    if (!as_json) args.erase(std::find(args.begin(), args.end(), "--trace-json"));
    const auto r = chat(args, {"OPENAI_API_KEY=" + key});
    CHECK(r.exit_code == 1);
    CHECK(r.out.find(key) == std::string::npos);
    CHECK(r.err.find(key) == std::string::npos);
    CHECK(r.err.find("[redacted]") != std::string::npos);
  }
  CHECK(mock.requests("gpt").at(0).authorization == "Bearer " + key);

  // Per-model key variables from the config file.
  config_file cfg(
      json({{"models", {"gpt", "backup"}},
            {"base_url", mock.base_url()},
            {"model_list",
             {{{"model_name", "backup"}, {"api_key_env", "BACKUP_KEY"}, {"model", "backup"}}}}})
          .dump());
  const auto r = chat({"--config", cfg.path, "--trace-json", "hi"},
                      {"OPENAI_API_KEY=" + key, "BACKUP_KEY=second-key-0042"});
  REQUIRE(r.exit_code == 0);
  CHECK(mock.requests("backup").back().authorization == "Bearer second-key-0042");
  CHECK(r.out.find("second-key-0042") == std::string::npos);
}

TEST_CASE("without --trace-json: the answer on stdout, the trace on stderr") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::error(503), mock_reply::answer("hello there")});
  std::vector<std::string> args = fast(mock, {"--model", "gpt", "hi"});
  args.erase(std::find(args.begin(), args.end(), "--trace-json"));
  const auto r = chat(args);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "hello there\n");
  CHECK(r.err.find("#1 gpt try 1") != std::string::npos);
  CHECK(r.err.find("server_error") != std::string::npos);
  CHECK(r.err.find("served by gpt after 2 attempts") != std::string::npos);
}

TEST_CASE("bad usage exits with 2 and names the flag") {
  struct bad {
    std::vector<std::string> args;
    std::string names;
  };
  const std::vector<bad> cases = {
      {{"--bogus"}, "--bogus"},
      {{"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--max-attempts", "0", "hi"},
       "--max-attempts"},
      {{"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--max-attempts", "x", "hi"},
       "--max-attempts"},
      {{"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--jitter", "lots", "hi"},
       "--jitter"},
      {{"--base-url", "http://127.0.0.1:1/v1", "--model", "m"}, "PROMPT"},
      {{"--base-url", "http://127.0.0.1:1/v1", "hi"}, "--model"},
      {{"--base-url", "127.0.0.1:1", "--model", "m", "hi"}, "base URL"},
      {{"--model", "m", "hi"}, "--model needs --base-url"},
      {{"--base-url"}, "--base-url needs a value"},
      {{"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--base-delay-ms", "50",
        "--max-delay-ms", "10", "hi"},
       "--max-delay-ms"},
  };
  for (const auto& c : cases) {
    INFO(c.names);
    const auto r = chat(c.args);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(c.names) != std::string::npos);
    CHECK(r.out.empty());
  }
}

TEST_CASE("a bad config file exits with 2 and names the JSON path") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"models": ["a"], "base_url": "http://127.0.0.1:1/v1", "max_attempts": "3"})",
       "$.max_attempts"},
      {R"({"models": ["a"], "base_url": "http://127.0.0.1:1/v1", "max_atempts": 3})",
       "$.max_atempts: unknown key"},
      {R"({"models": ["a", 7], "base_url": "http://127.0.0.1:1/v1"})", "$.models[1]"},
      {R"({"models": ["a"], "model_list": [{"model_name": "a"}, {"model_name": "b", "base_url": 1}]})",
       "$.model_list[1].base_url"},
      {R"({"models": ["a"], "model_list": [{"base_url": "http://127.0.0.1:1/v1"}]})",
       "$.model_list[0]: missing model_name"},
      {R"({"models": ["a"]})", "model 'a' has no base URL"},
      {R"({"models": ["a"], )", "not valid JSON"},
  };
  for (const auto& [text, names] : cases) {
    INFO(text);
    config_file cfg(text);
    const auto r = chat({"--config", cfg.path, "hi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(names) != std::string::npos);
    const bool names_file = r.err.find(cfg.path) != std::string::npos;
    CHECK((names_file || names.rfind("model '", 0) == 0));
  }
  const auto r = chat({"--config", "/nonexistent/failover.json", "hi"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("cannot read") != std::string::npos);
}

TEST_CASE("flags override the config file") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::error(503)});
  mock.script("other", {mock_reply::answer("from other")});
  config_file cfg(
      json({{"models", {"gpt"}}, {"base_url", mock.base_url()}, {"max_attempts", 1}}).dump());
  const auto r =
      chat({"--config", cfg.path, "--max-attempts", "2", "--base-delay-ms", "1", "--max-delay-ms",
            "2", "--model", "gpt", "--model", "other", "--trace-json", "hi"});
  REQUIRE(r.exit_code == 0);
  CHECK(parse_out(r)["served_by"] == "other");
  CHECK(mock.count("gpt") == 2);
}

TEST_CASE("the demo: no --base-url, an embedded provider, the whole story") {
  const auto r = chat({});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("rate_limited") != std::string::npos);
  CHECK(r.out.find("(server)") != std::string::npos);
  CHECK(r.out.find("HTTP 503") != std::string::npos);
  CHECK(r.out.find("served by gpt-4o after 3 attempts") != std::string::npos);
  CHECK(r.out.find("served by claude-sonnet (FALLBACK)") != std::string::npos);

  const auto j = chat({"--trace-json", "--max-attempts", "2"});
  REQUIRE(j.exit_code == 0);
  const auto nl = j.out.find('\n');
  REQUIRE(nl != std::string::npos);
  const json first = json::parse(j.out.substr(0, nl));
  CHECK(first["served_by"] == "claude-sonnet");  // two attempts: 429, 503, then the fallback
  CHECK(first["attempts"][0]["wait_reason"] == "server");

  const auto help = chat({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("--policy-fallback") != std::string::npos);
}

TEST_CASE("the config file: a directory, a device and a file over 1 MiB are refused") {
  struct bad {
    std::string path;
    std::string reason;
  };
  char dir[] = "/tmp/failover-itest-dir-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  // Valid JSON that would run, padded past the limit: only the size can refuse it.
  config_file big(R"({"models": ["m"], "base_url": "http://127.0.0.1:1/v1")" +
                  std::string(1 << 20, ' ') + "}");
  const std::vector<bad> cases = {{dir, "is a directory"},
                                  {"/dev/null", "is not a regular file"},
                                  {big.path, "larger than 1 MiB"}};
  for (const auto& c : cases) {
    INFO(c.path);
    const auto r = chat({"--config", c.path, "hi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(c.path + ": " + c.reason) != std::string::npos);
    CHECK(r.out.empty());
  }
  rmdir(dir);
}

TEST_CASE("a config file that is not JSON: the position is named, the text is not echoed") {
  config_file cfg("{\"models\": [\"a\"],\n \"api_key\": sk-not-a-json-value-0123456789}");
  const auto r = chat({"--config", cfg.path, "hi"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find(cfg.path + ": not valid JSON (line 2") != std::string::npos);
  CHECK(r.err.find("sk-not") == std::string::npos);
  CHECK(r.err.find("0123") == std::string::npos);
}

TEST_CASE("models: a model_list entry for no model, a model listed twice, LiteLLM's keys") {
  const std::string url = "http://127.0.0.1:1/v1";
  struct bad {
    std::string config;              // "" = no config file
    std::vector<std::string> flags;  // after --config FILE, before the prompt
    std::vector<std::string> names;  // each must be in stderr
  };
  const std::vector<bad> cases = {
      {json({{"models", {"claude-sonnet"}},
             {"base_url", url},
             {"model_list", {{{"model_name", "claude-sonet"}, {"model", "claude-3-5"}}}}})
           .dump(),
       {},
       {"$.model_list[0].model_name: 'claude-sonet' is not a model of the chain"}},
      {json({{"models", {"a", "b"}}, {"context_fallbacks", {"a"}}, {"base_url", url}}).dump(),
       {},
       {"model 'a' is listed twice"}},
      {"", {"--base-url", url, "--model", "a", "--model", "a"}, {"model 'a' is listed twice"}},
      {json({{"models", {"a"}},
             {"model_list",
              {{{"model_name", "a"},
                {"litellm_params",
                 {{"model", "openai/a"}, {"api_base", url}, {"api_key", "os.environ/K"}}}}}}})
           .dump(),
       {},
       {"$.model_list[0].litellm_params: unknown key", "\"base_url\" (for api_base)",
        "\"api_key_env\""}},
      {json({{"models", {"a"}},
             {"base_url", url},
             {"model_list", {{{"model_name", "a"}, {"api_key", "sk-in-the-file-0123456789"}}}}})
           .dump(),
       {},
       {"$.model_list[0].api_key: unknown key", "write \"api_key_env\""}},
      {json({{"models", {"a"}}, {"base_url", url}, {"context_window_fallbacks", {"b"}}}).dump(),
       {},
       {"$.context_window_fallbacks: unknown key; write \"context_fallbacks\""}},
      {json({{"models", {"a"}}, {"base_url", url}, {"num_retries", 2}}).dump(),
       {},
       {"$.num_retries: unknown key; write \"max_attempts\""}},
      {R"({"models": ["a"], "base_url": "http://127.0.0.1:1/v1",
           "max_attempts": 18446744073709551615})",
       {},
       {"$.max_attempts: too large"}},
      {"",
       {"--base-url", url, "--model", "a", "--max-attempts", "99999999999999999999"},
       {"--max-attempts: too large"}},
      {"", {"--base-url", url, "--model", "--max-attempts", "3"}, {"--model needs a value"}},
      {"", {"--base-url", url, "--model", "a", "--max-hops="}, {"--max-hops needs a value"}},
  };
  for (const auto& c : cases) {
    INFO(c.config << " " << c.flags.size());
    std::optional<config_file> cfg;
    std::vector<std::string> args;
    if (!c.config.empty()) {
      cfg.emplace(c.config);
      args = {"--config", cfg->path};
    }
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    args.push_back("hi");
    const auto r = chat(args);
    CHECK(r.exit_code == 2);
    for (const auto& n : c.names) CHECK(r.err.find(n) != std::string::npos);
    CHECK(r.err.find("got -1") == std::string::npos);
    CHECK(r.err.find("sk-in-the-file") == std::string::npos);
    CHECK(r.out.empty());
  }
}

TEST_CASE("models: a model_list entry for a model the flags chose, or the file's list, is kept") {
  mock_provider mock;
  mock.script("b-upstream", {mock_reply::answer("from b")});
  config_file cfg(
      json({{"models", {"a", "b"}},
            {"base_url", "http://127.0.0.1:1/v1"},
            {"model_list",
             {{{"model_name", "a"}, {"model", "a-upstream"}},
              {{"model_name", "b"}, {"model", "b-upstream"}, {"base_url", mock.base_url()}}}}})
          .dump());
  const auto r = chat({"--config", cfg.path, "--model", "b", "--trace-json", "hi"});
  REQUIRE(r.exit_code == 0);
  CHECK(parse_out(r)["served_by"] == "b");
  CHECK(mock.count("b-upstream") == 1);
}

TEST_CASE(
    "read timeouts: --max-read-timeout-retries sets how often one model is retried after a read "
    "timeout") {
  for (int retries : {0, 2}) {
    INFO("--max-read-timeout-retries " << retries);
    mock_provider mock;
    mock.script("gpt", {mock_reply::answer("too late").after(2000ms)});
    const auto r =
        chat(fast(mock, {"--model", "gpt", "--read-timeout-ms", "100", "--max-attempts", "5",
                         "--max-read-timeout-retries", std::to_string(retries), "hi"}));
    CHECK(r.exit_code == 1);
    const json j = parse_out(r);
    REQUIRE(j["attempts"].size() == static_cast<std::size_t>(retries + 1));
    for (const auto& a : j["attempts"]) CHECK(a["kind"] == "read_timeout");
    CHECK(j["attempts"].back()["gave_up"] == "read-timeout retries exhausted");
    CHECK(mock.count("gpt") == static_cast<std::size_t>(retries + 1));
  }
  // The config key, overridden by the flag; and the bound.
  mock_provider mock;
  mock.script("gpt", {mock_reply::answer("too late").after(2000ms)});
  config_file cfg(json({{"models", {"gpt"}},
                        {"base_url", mock.base_url()},
                        {"read_timeout_ms", 100},
                        {"max_read_timeout_retries", 0}})
                      .dump());
  auto r = chat({"--config", cfg.path, "--trace-json", "hi"});
  CHECK(r.exit_code == 1);
  CHECK(parse_out(r)["attempts"].size() == 1);
  r = chat({"--config", cfg.path, "--max-read-timeout-retries", "-1", "hi"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--max-read-timeout-retries: must be at least 0, got -1") != std::string::npos);
  r = chat({"--help"});
  CHECK(r.out.find("--max-read-timeout-retries N") != std::string::npos);
}

TEST_CASE("secrets: a key cut by the message limit, a base URL with a secret, a key as a name") {
  const std::string key = "plain-key-without-a-known-prefix-42";  // 35 characters
  // Every 8-character piece of the key: none may be printed.
  const auto leaks = [&](const std::string& text) {
    for (std::size_t i = 0; i + 8 <= key.size(); ++i)
      if (text.find(key.substr(i, 8)) != std::string::npos) return true;
    return false;
  };
  {
    // The provider echoes the key where the 400-character message limit cuts it.
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(401, "invalid_api_key",
                                          std::string(372, 'x') + key + " was rejected")});
    for (bool as_json : {true, false}) {
      std::vector<std::string> args = fast(mock, {"--model", "gpt", "hi"});
      if (!as_json) args.erase(std::find(args.begin(), args.end(), "--trace-json"));
      const auto r = chat(args, {"OPENAI_API_KEY=" + key});
      CHECK(r.exit_code == 1);
      CHECK_FALSE(leaks(r.out));
      CHECK_FALSE(leaks(r.err));
    }
    CHECK(mock.requests("gpt").at(0).authorization == "Bearer " + key);
  }
  const std::vector<std::string> urls = {"http://user:" + key + "@127.0.0.1:1/v1",
                                         "http://127.0.0.1:1/v1?key=" + key,
                                         "127.0.0.1:1/v1#" + key, key + "@127.0.0.1:1/v1"};
  for (const auto& url : urls) {
    INFO(url);
    auto r = chat({"--base-url", url, "--model", "m", "hi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("base URL of model 'm'") != std::string::npos);
    CHECK_FALSE(leaks(r.err));
    config_file cfg(
        json({{"models", {"m"}}, {"model_list", {{{"model_name", "m"}, {"base_url", url}}}}})
            .dump());
    r = chat({"--config", cfg.path, "hi"});
    CHECK(r.exit_code == 2);
    CHECK_FALSE(leaks(r.err));
  }
  // A mistyped URL that holds the key elsewhere: the flag or key is named, with why, never the
  // text (the URL parser's own message quotes it).
  struct typo {
    std::string url;
    std::string why;
  };
  const std::vector<typo> typos = {
      {"https:/user:" + key + "@127.0.0.1/v1", "must start with http:// or https://"},
      {"https://127.0.0.1:" + key + "/v1", "port is not a number from 1 to 65535"},
      {"htps://127.0.0.1/v1/" + key, "must start with http:// or https://"},
      {"https://:" + key + "/v1", "port is not a number"}};
  for (const auto& t : typos) {
    INFO(t.url);
    auto r = chat({"--base-url", t.url, "--model", "m", "hi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("base URL of model 'm' (--base-url): ") != std::string::npos);
    CHECK(r.err.find(t.why) != std::string::npos);
    CHECK_FALSE(leaks(r.err));
    config_file top(json({{"models", {"m"}}, {"base_url", t.url}}).dump());
    r = chat({"--config", top.path, "hi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(top.path + ": $.base_url") != std::string::npos);
    CHECK_FALSE(leaks(r.err));
    config_file entry(json({{"models", {"m"}},
                            {"base_url", "http://127.0.0.1:1/v1"},
                            {"model_list", {{{"model_name", "m"}, {"base_url", t.url}}}}})
                          .dump());
    r = chat({"--config", entry.path, "hi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(entry.path + ": $.model_list[0].base_url") != std::string::npos);
    CHECK_FALSE(leaks(r.err));
  }
  // The key given where its variable's name belongs.
  for (const std::string& name : {key, std::string("gsk_abcdefgh0123456789wxyz")}) {
    INFO(name);
    const auto r =
        chat({"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--api-key-env", name, "hi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--api-key-env") != std::string::npos);
    CHECK(r.err.find(name.substr(4, 12)) == std::string::npos);
  }
}

TEST_CASE("secrets: keys are masked in the unescaped message, and never in the answer") {
  // A key with a '/' that the provider's JSON escapes as "\/", cut by the 400-character limit.
  const std::string key = "plain/key-without-a-known-prefix-42";
  const auto leaks = [&](const std::string& text) {
    for (std::size_t i = 0; i + 8 <= key.size(); ++i)
      if (text.find(key.substr(i, 8)) != std::string::npos) return true;
    return false;
  };
  std::string escaped = key;
  escaped.replace(escaped.find('/'), 1, "\\/");
  for (std::size_t at : {std::size_t{372}, std::size_t{390}, std::size_t{398}}) {
    INFO("key at " << at);
    mock_provider mock;
    mock.script("gpt", {mock_reply::raw(401,
                                        R"({"error":{"code":"invalid_api_key","message":")" +
                                            std::string(at, 'x') + escaped + R"( was rejected"}})",
                                        "application/json")});
    for (bool as_json : {true, false}) {
      std::vector<std::string> args = fast(mock, {"--model", "gpt", "hi"});
      if (!as_json) args.erase(std::find(args.begin(), args.end(), "--trace-json"));
      const auto r = chat(args, {"OPENAI_API_KEY=" + key});
      CHECK(r.exit_code == 1);
      CHECK_FALSE(leaks(r.out));
      CHECK_FALSE(leaks(r.err));
      if (as_json) {
        const std::string message = parse_out(r)["error"]["message"];
        CHECK(message.size() <= 403);  // still cut for display
        if (at == 372) CHECK(message.find("[redacted] was rejected") != std::string::npos);
      }
    }
  }
  // A key that is a common word, or a JSON literal, changes nothing in the answer or the body.
  for (const std::string& word : {std::string("test"), std::string("null")}) {
    INFO("key " << word);
    mock_provider mock;
    mock.script("gpt", {mock_reply::answer("the latest test is null")});
    mock.script("tool", {mock_reply::tool_call("f", R"({"x": null})")});  // content null
    const auto r = chat(fast(mock, {"--model", "gpt", "hi"}), {"OPENAI_API_KEY=" + word});
    REQUIRE(r.exit_code == 0);
    CHECK(parse_out(r)["answer"] == "the latest test is null");
    std::vector<std::string> args = fast(mock, {"--model", "gpt", "hi"});
    args.erase(std::find(args.begin(), args.end(), "--trace-json"));
    const auto text = chat(args, {"OPENAI_API_KEY=" + word});
    REQUIRE(text.exit_code == 0);
    CHECK(text.out == "the latest test is null\n");
    const auto tool = chat(fast(mock, {"--model", "tool", "hi"}), {"OPENAI_API_KEY=" + word});
    CHECK(tool.exit_code == 0);  // the body still parses
  }
}

TEST_CASE("secrets: a key with a trailing newline is trimmed, one with a line break refused") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::answer("ok")});
  auto r = chat(fast(mock, {"--model", "gpt", "hi"}), {"OPENAI_API_KEY=  key-from-a-file-0042\n"});
  REQUIRE(r.exit_code == 0);
  CHECK(mock.requests("gpt").at(0).authorization == "Bearer key-from-a-file-0042");
  // Whitespace only: as if unset.
  r = chat(fast(mock, {"--model", "gpt", "hi"}), {"OPENAI_API_KEY=\n"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.find("OPENAI_API_KEY is not set") != std::string::npos);
  CHECK(mock.requests("gpt").back().authorization.empty());
  // A CR, LF or other control character inside would start a header of its own.
  for (const std::string& value : {std::string("secret-0042\r\nX-Injected: 1"),
                                   std::string("secret-0042\tX"), std::string("secret\x7f-0042")}) {
    const std::size_t before = mock.count("gpt");
    r = chat(fast(mock, {"--model", "gpt", "--api-key-env", "TEAM_KEY", "hi"}),
             {"TEAM_KEY=" + value});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("the key in $TEAM_KEY holds a control character") != std::string::npos);
    CHECK(r.err.find("secret") == std::string::npos);
    CHECK(r.err.find("X-Injected") == std::string::npos);
    CHECK(mock.count("gpt") == before);  // nothing was sent
  }
}

TEST_CASE("control characters from a server never reach the terminal as such") {
  // An error message, code and model id that would clear the screen and print a fake summary.
  const std::string inject = R"(\u001b[2J\u001b[1;1H\nserved by FAKE after 1 attempt\r\u009b31m)";
  const auto hostile = [&](mock_provider& mock) {
    mock.script("gpt",
                {mock_reply::raw(
                     503, R"({"error":{"message":")" + inject + R"(","code":")" + inject + R"("}})",
                     "application/json"),
                 mock_reply::raw(200,
                                 R"({"model":"gpt)" + inject +
                                     R"(","choices":[{"message":{"content":"fine"},)"
                                     R"("finish_reason":"stop"}]})",
                                 "application/json")});
  };
  const auto clean = [](const std::string& text) {
    for (std::size_t i = 0; i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if ((c < 0x20 && c != '\n') || c == 0x7F) return false;
      if (c == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
          static_cast<unsigned char>(text[i + 1]) <= 0x9F)
        return false;
    }
    return true;
  };
  mock_provider text_mode;
  hostile(text_mode);
  std::vector<std::string> args = fast(text_mode, {"--model", "gpt", "hi"});
  args.erase(std::find(args.begin(), args.end(), "--trace-json"));
  auto r = chat(args);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "fine\n");
  CHECK(clean(r.err));
  CHECK(r.err.find("\nserved by FAKE") == std::string::npos);  // no line of the server's
  CHECK(r.err.find("served by FAKE") != std::string::npos);    // the text itself is kept
  CHECK(last_line(r.err).rfind("served by gpt after 2 attempts", 0) == 0);

  mock_provider json_mode;
  hostile(json_mode);
  r = chat(fast(json_mode, {"--model", "gpt", "hi"}));
  REQUIRE(r.exit_code == 0);
  CHECK(clean(r.out));
  const json j = parse_out(r);
  REQUIRE(j["attempts"].size() == 2);
  CHECK(clean(j["model"].get<std::string>()));
  CHECK(clean(j["attempts"][0]["message"].get<std::string>()));
  CHECK(clean(j["attempts"][0]["code"].get<std::string>()));
}

TEST_CASE("models: at most 256 per list and in all") {
  mock_provider mock;
  mock.script("m0", {mock_reply::answer("first")});
  auto names = [](std::size_t n, const std::string& prefix) {
    std::vector<std::string> v;
    for (std::size_t i = 0; i < n; ++i) v.push_back(prefix + std::to_string(i));
    return v;
  };
  // Tens of thousands of models in a file: refused before any chain is built.
  config_file many(json({{"models", names(20000, "m")}, {"base_url", mock.base_url()}}).dump());
  auto r = chat({"--config", many.path, "hi"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find(many.path + ": $.models: more than 256 models") != std::string::npos);

  json entries = json::array();
  for (const auto& n : names(300, "m")) entries.push_back({{"model_name", n}});
  config_file routes(json({{"models", {"m0"}}, {"model_list", entries}}).dump());
  r = chat({"--config", routes.path, "hi"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("$.model_list: more than 256 entries") != std::string::npos);

  std::vector<std::string> flags;
  for (const auto& n : names(257, "m")) {
    flags.push_back("--model");
    flags.push_back(n);
  }
  flags.push_back("hi");
  r = chat(fast(mock, flags));
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--model: more than 256 models") != std::string::npos);

  // Each list within the cap, together above it.
  config_file split(json({{"models", names(200, "m")},
                          {"context_fallbacks", names(57, "c")},
                          {"base_url", mock.base_url()}})
                        .dump());
  r = chat({"--config", split.path, "hi"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("together: more than 256 models") != std::string::npos);

  // 256 in all is a chain.
  config_file full(json({{"models", names(200, "m")},
                         {"context_fallbacks", names(56, "c")},
                         {"base_url", mock.base_url()}})
                       .dump());
  r = chat({"--config", full.path, "--trace-json", "hi"});
  CHECK(r.exit_code == 0);
  CHECK(parse_out(r)["answer"] == "first");
}

TEST_CASE("a config file in YAML: the file must be JSON, and what to write instead") {
  config_file yaml(
      "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: openai/gpt-4o\n");
  auto r = chat({"--config", yaml.path, "hi"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("not valid JSON (line 1, column 1): the config file must be JSON") !=
        std::string::npos);
  CHECK(r.err.find("it looks like YAML") != std::string::npos);
  CHECK(r.err.find("\"model_list\": [{\"model_name\"") != std::string::npos);
  CHECK(r.err.find("openai/gpt-4o") == std::string::npos);  // still nothing of the file is shown
  // Broken JSON is not called YAML.
  config_file broken(R"({"models": [})");
  r = chat({"--config", broken.path, "hi"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("the config file must be JSON") != std::string::npos);
  CHECK(r.err.find("YAML") == std::string::npos);
}

TEST_CASE("usage and model: the provider's token counts and model id, per attempt and in all") {
  mock_provider mock;
  mock.script("gpt-4o-2024-08-06", {mock_reply::refusal()});
  mock.script("reviewed", {mock_reply::answer("careful answer")});
  config_file cfg(json({{"models", {"gpt"}},
                        {"policy_fallbacks", {"reviewed"}},
                        {"base_url", mock.base_url()},
                        {"model_list", {{{"model_name", "gpt"}, {"model", "gpt-4o-2024-08-06"}}}}})
                      .dump());
  const json two = {{"prompt", 1}, {"completion", 1}, {"total", 2}};

  auto r = chat({"--config", cfg.path, "--trace-json", "hi"});
  REQUIRE(r.exit_code == 0);
  const json j = parse_out(r);
  CHECK(j["served_by"] == "reviewed");
  CHECK(j["model"] == "reviewed");  // as the provider named it
  REQUIRE(j["attempts"].size() == 2);
  CHECK(j["usage"] == two);
  CHECK(j["attempts"][1]["usage"] == two);
  CHECK(j["attempts"][0]["usage"] == two);  // the refusal was billed too

  // Text mode: the summary line (the last line) says the same.
  r = chat({"--config", cfg.path, "hi"});
  REQUIRE(r.exit_code == 0);
  const std::string line = last_line(r.err);
  CHECK(line.rfind("served by reviewed (REROUTED", 0) == 0);
  CHECK(line.find("; model reviewed") != std::string::npos);
  CHECK(line.find("; tokens 1 prompt + 1 completion = 2") != std::string::npos);
  CHECK(line.find("; failed attempts billed 2 tokens") != std::string::npos);

  // The model id the provider reports, where it differs from the chain entry's name.
  mock_provider dated;
  dated.script("gpt-4o-2024-08-06", {mock_reply::answer("hello")});
  config_file alias(
      json({{"models", {"gpt"}},
            {"base_url", dated.base_url()},
            {"model_list", {{{"model_name", "gpt"}, {"model", "gpt-4o-2024-08-06"}}}}})
          .dump());
  r = chat({"--config", alias.path, "--trace-json", "hi"});
  REQUIRE(r.exit_code == 0);
  const json k = parse_out(r);
  CHECK(k["served_by"] == "gpt");
  CHECK(k["model"] == "gpt-4o-2024-08-06");
  CHECK(k["attempts"][0]["usage"] == k["usage"]);

  // Failed attempts billed near the largest count: the sum saturates instead of wrapping.
  mock_provider huge;
  const std::string billed =
      R"({"error":{"message":"busy"},"usage":{"prompt_tokens":9223372036854775807,)"
      R"("completion_tokens":9223372036854775807,"total_tokens":9223372036854775807}})";
  huge.script("gpt", {mock_reply::raw(503, billed, "application/json"),
                      mock_reply::raw(503, billed, "application/json"), mock_reply::answer("ok")});
  std::vector<std::string> args = fast(huge, {"--model", "gpt", "hi"});
  args.erase(std::find(args.begin(), args.end(), "--trace-json"));
  r = chat(args);
  REQUIRE(r.exit_code == 0);
  CHECK(last_line(r.err).find("; failed attempts billed 9223372036854775807 tokens") !=
        std::string::npos);
}

TEST_CASE("hints: a failed call names the setting that would help, where one is known") {
  struct fault {
    std::string name;
    std::vector<mock_reply> replies;
    std::vector<std::string> flags;
    std::vector<std::string> env;
    std::string hint;  // "" = none
  };
  const std::string key = "plain-key-without-a-known-prefix-42";
  const std::vector<fault> faults = {
      {"context window",
       {mock_reply::error(400, "context_length_exceeded", "too long")},
       {},
       {},
       "add a --context-fallback"},
      {"context window, the fallback too long as well",
       {mock_reply::error(400, "context_length_exceeded", "too long")},
       {"--context-fallback", "gpt-long"},
       {},
       ""},
      {"content policy",
       {mock_reply::error(400, "content_policy_violation", "refused")},
       {},
       {},
       "add a --policy-fallback, if rerouting is acceptable"},
      {"deadline",
       {mock_reply::error(503)},
       {"--max-attempts", "1000", "--base-delay-ms", "20", "--max-delay-ms", "20", "--deadline-ms",
        "200"},
       {},
       "raise --deadline-ms (now 200)"},
      {"unauthorized",
       {mock_reply::error(401)},
       {},
       {"OPENAI_API_KEY=" + key},
       "check the key in $OPENAI_API_KEY"},
      {"unauthorized, another variable",
       {mock_reply::error(401)},
       {"--api-key-env", "TEAM_KEY"},
       {"TEAM_KEY=" + key},
       "check the key in $TEAM_KEY"},
      {"unauthorized, no key set",
       {mock_reply::error(401)},
       {"--api-key-env", "TEAM_KEY"},
       {"TEAM_KEY="},
       "$TEAM_KEY is not set"},
      {"server wait above the cap",
       {mock_reply::error(429).with_header("Retry-After", "120")},
       {"--max-server-wait-ms", "1000"},
       {},
       "raise --max-server-wait-ms (now 1000; the server asked for 120.00s)"},
      {"hop limit",
       {mock_reply::error(503)},
       {"--model", "backup", "--max-hops", "1"},
       {},
       "raise --max-hops (now 1)"},
      {"read timeouts, no fallback",
       {mock_reply::answer("too late").after(2000ms)},
       {"--read-timeout-ms", "100", "--max-read-timeout-retries", "0"},
       {},
       "raise --read-timeout-ms (now 100)"},
      {"a server that stays down", {mock_reply::error(503)}, {}, {}, ""},
      {"a bad request", {mock_reply::error(400, "", "bad field")}, {}, {}, ""},
  };
  for (const auto& f : faults) {
    INFO(f.name);
    mock_provider mock;
    mock.script("gpt", f.replies);
    mock.script("gpt-long", {mock_reply::error(400, "context_length_exceeded", "too long")});
    mock.script("backup", {mock_reply::answer("never")});
    std::vector<std::string> more = {"--model", "gpt"};
    more.insert(more.end(), f.flags.begin(), f.flags.end());
    more.push_back("hi");
    auto args = fast(mock, more);
    const auto r = chat(args, f.env);
    CHECK(r.exit_code == 1);
    const json j = parse_out(r);
    const std::string line = last_line(r.err);
    CHECK(line.rfind("failover-chat: failed after", 0) == 0);
    if (f.hint.empty()) {
      CHECK(j["error"]["hint"].is_null());
      CHECK(line.find("hint:") == std::string::npos);
    } else {
      REQUIRE(j["error"]["hint"].is_string());
      CHECK(j["error"]["hint"].get<std::string>().find(f.hint) != std::string::npos);
      CHECK(line.find("; hint: ") != std::string::npos);
      CHECK(line.find(f.hint) != std::string::npos);
    }
    CHECK(r.err.find(key) == std::string::npos);
    CHECK(r.out.find(key) == std::string::npos);
  }
}
