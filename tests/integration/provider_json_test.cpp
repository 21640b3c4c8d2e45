// The provider JSON reader without sockets: tool-call answers, token usage on answers and
// failures, Anthropic and Gemini error shapes, and the bounds that hold whatever a server sends.
#include <failover/adapters/openai.hpp>
#include <failover/core/classifier.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <tuple>

#include "catch.hpp"

using failover::error_kind;
using failover::token_usage;
using failover::http::response;
namespace openai = failover::openai;

namespace {

response reply(int status, std::string body) {
  response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

failover::error classify(const failover::failure& f) {
  return failover::classifier{}.classify(f, std::chrono::system_clock::now());
}

bool same(const std::optional<token_usage>& u, long long prompt, long long completion,
          long long total) {
  return u && u->prompt == prompt && u->completion == completion && u->total == total;
}

// A chat completion whose first choice's message is `message` and whose top level adds `extra`.
std::string completion_with(const std::string& message, const std::string& extra = {}) {
  return R"({"id":"c1","model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":)" + message +
         R"(,"finish_reason":"stop"}])" + (extra.empty() ? "" : "," + extra) + "}";
}

// Whether `text` is well-formed UTF-8 (enough of a check for what shorten() cuts).
bool valid_utf8(const std::string& text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
    if (i + n > text.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

}  // namespace

TEST_CASE("read_chat: a tool-call answer is an answer, its arguments kept as sent") {
  // OpenAI's shape: content null, the arguments a JSON string (here with odd spacing and an
  // escape that a re-serialisation would change).
  auto r = openai::read_chat(reply(
      200,
      R"({"id":"c1","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[)"
      R"({"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{ \"city\":\"Paris\",  \"unit\":\"\\u00b0C\"}"}},)"
      R"({"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{\"tz\": \"CET\""}}]},"finish_reason":"tool_calls"}],)"
      R"("usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99}})"));
  REQUIRE(r);
  const openai::chat_completion& c = r.value();
  CHECK(c.content.empty());
  CHECK(c.finish_reason == "tool_calls");
  REQUIRE(c.tool_calls.size() == 2);
  CHECK(c.tool_calls[0].id == "call_1");
  CHECK(c.tool_calls[0].name == "get_weather");
  CHECK(c.tool_calls[0].arguments == R"({ "city":"Paris",  "unit":"\u00b0C"})");
  CHECK(c.tool_calls[1].name == "get_time");
  CHECK(c.tool_calls[1].arguments == R"({"tz": "CET")");  // invalid JSON is the caller's to judge
  CHECK(same(c.usage, 82, 17, 99));

  // Text beside tool calls: both are kept.
  r = openai::read_chat(reply(
      200,
      completion_with(
          R"({"content":"Let me check.","tool_calls":[{"id":"x","function":{"name":"f","arguments":"{}"}}]})")));
  REQUIRE(r);
  CHECK(r.value().content == "Let me check.");
  REQUIRE(r.value().tool_calls.size() == 1);

  // A server that sends the arguments as an object gets them back as compact JSON text.
  r = openai::read_chat(reply(
      200,
      completion_with(
          R"({"content":null,"tool_calls":[{"id":"x","function":{"name":"f","arguments":{"a": [1, 2]}}}]})")));
  REQUIRE(r);
  CHECK(r.value().tool_calls[0].arguments == R"({"a":[1,2]})");
}

TEST_CASE("read_chat: a message with neither text nor a usable tool call is invalid") {
  for (
      const char* message :
      {R"({"content":null})", R"({"content":null,"tool_calls":[]})",
       R"({"content":null,"tool_calls":"get_weather"})",
       R"({"content":null,"tool_calls":[1,"x",null,{"function":"f"},{"function":{"name":5}},{"function":{"arguments":"{}"}}]})",
       R"({"content":{"text":"hi"}})", R"({"content":["hi"]})"}) {
    INFO(message);
    const auto r = openai::read_chat(reply(200, completion_with(message)));
    REQUIRE_FALSE(r);
    CHECK(classify(r.failure()).kind == error_kind::invalid_response);
  }
  // Unusable entries are skipped; the usable one is the answer.
  const auto r = openai::read_chat(reply(
      200,
      completion_with(
          R"({"content":null,"tool_calls":[{"function":{"name":7}},{"id":"ok","function":{"name":"f"}}]})")));
  REQUIRE(r);
  REQUIRE(r.value().tool_calls.size() == 1);
  CHECK(r.value().tool_calls[0].id == "ok");
  CHECK(r.value().tool_calls[0].arguments.empty());
}

TEST_CASE("read_chat: usage and the provider's model are part of the answer") {
  auto r = openai::read_chat(reply(
      200,
      completion_with(R"({"content":"hi"})",
                      R"("usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15})")));
  REQUIRE(r);
  CHECK(r.value().model == "gpt-4o-2024-08-06");
  CHECK(same(r.value().usage, 12, 3, 15));

  // No total sent: the sum.
  r = openai::read_chat(
      reply(200, completion_with(R"({"content":"hi"})",
                                 R"("usage":{"prompt_tokens":12,"completion_tokens":3})")));
  REQUIRE(r);
  CHECK(same(r.value().usage, 12, 3, 15));

  // No usage: none.
  r = openai::read_chat(reply(200, completion_with(R"({"content":"hi"})")));
  REQUIRE(r);
  CHECK_FALSE(r.value().usage);
}

TEST_CASE(
    "read_chat: token counts that are not non-negative integers fitting a long long are "
    "ignored") {
  const std::string good = R"("completion_tokens":3)";
  for (const char* bad :
       {"-1", "1.5", "12.0", "\"12\"", "null", "true", "[1]", "{}", "9223372036854775808",
        "18446744073709551615", "99999999999999999999", "1e18"}) {
    INFO(bad);
    const auto r = openai::read_chat(reply(
        200, completion_with(R"({"content":"hi"})", std::string(R"("usage":{"prompt_tokens":)") +
                                                        bad + "," + good + "}")));
    REQUIRE(r);
    CHECK(same(r.value().usage, 0, 3, 3));  // the bad count ignored, the good one kept
  }
  // The largest count is kept; a sum that would overflow leaves the total unknown (0).
  auto r = openai::read_chat(reply(
      200,
      completion_with(R"({"content":"hi"})",
                      R"("usage":{"prompt_tokens":9223372036854775807,"completion_tokens":1})")));
  REQUIRE(r);
  CHECK(same(r.value().usage, 9223372036854775807LL, 1, 0));
  // Nothing usable, or usage not an object: no usage at all.
  for (const char* usage : {R"("usage":{"prompt_tokens":-5})", R"("usage":[1,2,3])",
                            R"("usage":"lots")", R"("usage":{})"}) {
    INFO(usage);
    r = openai::read_chat(reply(200, completion_with(R"({"content":"hi"})", usage)));
    REQUIRE(r);
    CHECK_FALSE(r.value().usage);
  }
}

TEST_CASE("failures keep the usage their response reported") {
  const std::string usage =
      R"("usage":{"prompt_tokens":40,"completion_tokens":2,"total_tokens":42})";
  // A 200 refused by the content filter was still billed.
  auto r = openai::read_chat(
      reply(200, R"({"choices":[{"message":{"content":""},"finish_reason":"content_filter"}],)" +
                     usage + "}"));
  REQUIRE_FALSE(r);
  CHECK(same(r.failure().usage, 40, 2, 42));
  CHECK(same(classify(r.failure()).usage, 40, 2, 42));

  // A 200 with no usable answer.
  r = openai::read_chat(reply(200, R"({"choices":[],)" + usage + "}"));
  REQUIRE_FALSE(r);
  CHECK(r.failure().kind == error_kind::invalid_response);
  CHECK(same(r.failure().usage, 40, 2, 42));

  // An error body, in each provider's usage shape.
  auto f = openai::error_failure(
      reply(500, R"({"error":{"message":"upstream died","type":"server_error"},)" + usage + "}"));
  CHECK(same(f.usage, 40, 2, 42));
  f = openai::error_failure(reply(
      529,
      R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"usage":{"input_tokens":9,"output_tokens":0}})"));
  CHECK(same(f.usage, 9, 0, 9));
  f = openai::error_failure(reply(
      503,
      R"({"error":{"code":503,"status":"UNAVAILABLE","message":"x"},"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1,"totalTokenCount":5}})"));
  CHECK(same(f.usage, 4, 1, 5));
  // A failure whose body said nothing about usage has none.
  CHECK_FALSE(
      openai::error_failure(reply(429, R"({"error":{"code":"rate_limit_exceeded"}})")).usage);
}

TEST_CASE("Anthropic error shapes: each documented type gives its kind") {
  // docs.claude.com/en/api/errors: the type for each status.
  for (auto [status, type, kind, transient] :
       {std::tuple{400, "invalid_request_error", error_kind::bad_request, false},
        std::tuple{401, "authentication_error", error_kind::unauthorized, false},
        std::tuple{403, "permission_error", error_kind::forbidden, false},
        std::tuple{404, "not_found_error", error_kind::not_found, false},
        // No row: 413 is the status's to decide (permanent, yet another provider may take it).
        std::tuple{413, "request_too_large", error_kind::unknown, false},
        std::tuple{429, "rate_limit_error", error_kind::rate_limited, true},
        std::tuple{500, "api_error", error_kind::server_error, true},
        std::tuple{529, "overloaded_error", error_kind::overloaded, true}}) {
    INFO(type);
    const auto f = openai::error_failure(
        reply(status, std::string(R"({"type":"error","error":{"type":")") + type +
                          R"(","message":"m"},"request_id":"req_011"})"));
    CHECK(f.code == type);
    CHECK_FALSE(f.kind);
    const auto e = classify(f);
    CHECK(e.kind == kind);
    CHECK(e.transient == transient);
  }
}

TEST_CASE("Anthropic's prompt-too-long invalid_request_error is a context-window failure") {
  // The documented shape: 400, invalid_request_error, a message that starts "prompt is too long".
  const auto f = openai::error_failure(reply(
      400,
      R"({"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"},"request_id":"req_011"})"));
  CHECK(f.code == "invalid_request_error");  // the provider's code, as sent
  CHECK(f.kind == error_kind::context_window);
  const auto e = classify(f);
  CHECK(e.kind == error_kind::context_window);
  CHECK_FALSE(e.transient);

  // Any other invalid_request_error stays a bad request, and the words elsewhere change nothing.
  CHECK(
      classify(
          openai::error_failure(reply(
              400,
              R"({"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}})")))
          .kind == error_kind::bad_request);
  CHECK(
      classify(
          openai::error_failure(reply(
              429,
              R"({"type":"error","error":{"type":"rate_limit_error","message":"prompt is too long"}})")))
          .kind == error_kind::rate_limited);
  CHECK_FALSE(openai::parse_error_body(
                  R"({"error":{"type":"invalid_request_error","message":"prompt is too long"}})")
                  ->kind);  // not Anthropic's envelope (no top-level "type": "error")
}

TEST_CASE("Gemini error shapes: error.status is the code, each documented status gives its kind") {
  // ai.google.dev/gemini-api/docs/troubleshooting: the status for each HTTP code.
  for (auto [status, name, kind, transient] :
       {std::tuple{400, "INVALID_ARGUMENT", error_kind::bad_request, false},
        std::tuple{400, "FAILED_PRECONDITION", error_kind::forbidden, false},
        std::tuple{403, "PERMISSION_DENIED", error_kind::forbidden, false},
        std::tuple{404, "NOT_FOUND", error_kind::not_found, false},
        std::tuple{429, "RESOURCE_EXHAUSTED", error_kind::rate_limited, true},
        std::tuple{500, "INTERNAL", error_kind::server_error, true},
        std::tuple{503, "UNAVAILABLE", error_kind::server_error, true},
        std::tuple{504, "DEADLINE_EXCEEDED", error_kind::server_error, true}}) {
    INFO(name);
    const std::string body = R"({"error":{"code":)" + std::to_string(status) +
                             R"(,"message":"m","status":")" + name + R"("}})";
    const auto f = openai::error_failure(reply(status, body));
    CHECK(f.code == name);
    CHECK(f.message == "m");
    auto e = classify(f);
    CHECK(e.kind == kind);
    CHECK(e.transient == transient);
    // A gateway that answers 502 for everything: the provider's word still decides.
    e = classify(openai::error_failure(reply(502, body)));
    CHECK(e.kind == kind);
  }
}

TEST_CASE(
    "Gemini's invalid API key (400 INVALID_ARGUMENT, reason API_KEY_INVALID) is unauthorized") {
  const auto f = openai::error_failure(reply(
      400,
      R"({"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",)"
      R"("details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}})"));
  CHECK(f.code == "INVALID_ARGUMENT");
  const auto e = classify(f);
  CHECK(e.kind == error_kind::unauthorized);  // falls back instead of ending the chain
  CHECK_FALSE(e.transient);
}

TEST_CASE("JSON nesting is bounded before the body is parsed") {
  const std::string deep = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  auto r = openai::read_chat(reply(200, deep));
  REQUIRE_FALSE(r);
  CHECK(r.failure().kind == error_kind::invalid_response);
  CHECK(r.failure().message.find("64") != std::string::npos);
  CHECK(r.failure().message.find("max_depth") != std::string::npos);

  // An error body nested too deep: the status decides, the message names the bound.
  const auto f = openai::error_failure(reply(503, R"({"error":)" + deep + "}"));
  CHECK(f.code.empty());
  CHECK(f.message.find("max_depth") != std::string::npos);
  CHECK(classify(f).kind == error_kind::server_error);
  CHECK_FALSE(openai::parse_error_body(deep));

  // Exactly at the bound is read; one more level is not. Brackets in strings do not count.
  auto nested = [](int levels) {  // the top-level object and levels - 1 arrays inside it
    std::string inner = "1";
    for (int i = 1; i < levels; ++i) inner = "[" + inner + "]";
    return completion_with(R"({"content":"[[[{{{\"[\\\"]"})", R"("x":)" + inner);
  };
  CHECK(openai::read_chat(reply(200, nested(64))));
  CHECK_FALSE(openai::read_chat(reply(200, nested(65))));
  CHECK(openai::read_chat(reply(200, nested(65)), openai::json_limits{65}));
  CHECK(openai::read_chat(reply(200, nested(64))).value().content == R"([[[{{{"[\"])");
}

TEST_CASE("the number of JSON values and the body's size are bounded before parsing") {
  // A flat body costs a parser about 100 bytes per value: 30 MB of {} took 975 MB.
  std::string flat = "[";
  for (int i = 0; i < 1'000'000; ++i) flat += "{},";
  flat += "{}]";
  auto r = openai::read_chat(reply(200, flat));
  REQUIRE_FALSE(r);
  CHECK(r.failure().kind == error_kind::invalid_response);
  CHECK(r.failure().message.find("1000000 values (json_limits::max_values)") != std::string::npos);
  auto f = openai::error_failure(reply(503, R"({"error":)" + flat + "}"));
  CHECK(f.code.empty());
  CHECK(f.message.find("max_values") != std::string::npos);
  CHECK(classify(f).kind == error_kind::server_error);  // the status decides
  CHECK_FALSE(openai::parse_error_body(flat));

  // What counts: arrays, objects and commas, outside strings. This answer holds 4 containers
  // and 4 commas, whatever its strings hold.
  const std::string body = completion_with(R"({"content":"a,b,[c{,"})");
  openai::json_limits limits;
  limits.max_values = 8;
  CHECK(openai::read_chat(reply(200, body), limits));
  limits.max_values = 7;
  r = openai::read_chat(reply(200, body), limits);
  REQUIRE_FALSE(r);
  CHECK(r.failure().message.find("more than 7 values") != std::string::npos);

  // The size: exactly the bound is read, one byte more is not.
  limits = {};
  limits.max_body = body.size();
  CHECK(openai::read_chat(reply(200, body), limits));
  limits.max_body = body.size() - 1;
  r = openai::read_chat(reply(200, body), limits);
  REQUIRE_FALSE(r);
  CHECK(r.failure().kind == error_kind::invalid_response);
  CHECK(r.failure().message.find("json_limits::max_body") != std::string::npos);
  f = openai::error_failure(reply(429, R"({"error":{"code":"insufficient_quota","message":")" +
                                           std::string(body.size(), 'x') + R"("}})"),
                            limits);
  CHECK(f.code.empty());
  CHECK(f.message.find("max_body") != std::string::npos);
  CHECK(classify(f).kind == error_kind::rate_limited);

  // The default is the HTTP adapters' own: 16 MiB.
  r = openai::read_chat(reply(200, std::string(std::size_t{16} << 20, ' ') + body));
  REQUIRE_FALSE(r);
  CHECK(r.failure().message.find("16777216 bytes") != std::string::npos);
}

TEST_CASE("control characters in a body's message, code, type and model are replaced") {
  // A server could otherwise move a terminal's cursor, recolour it, or print a fake line.
  const std::string hostile = R"(ok\nFAKE: served\r\u001b[31mred\u009b2J\u007f\u0000\tend)";
  const auto clean = [](const std::string& text) {
    for (std::size_t i = 0; i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (c < 0x20 || c == 0x7F) return false;
      if (c == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
          static_cast<unsigned char>(text[i + 1]) <= 0x9F)
        return false;
    }
    return true;
  };
  auto f = openai::error_failure(
      reply(400, R"({"error":{"message":")" + hostile + R"(","code":")" + hostile + R"("}})"));
  CHECK(clean(f.message));
  CHECK(f.message == "ok FAKE: served  [31mred 2J   end");
  CHECK(clean(f.code));
  auto e = openai::parse_error_body(R"({"error":{"type":")" + hostile + R"("}})");
  REQUIRE(e);
  CHECK(clean(e->type));
  CHECK(clean(e->code));
  for (const std::string& gateway :
       {R"({"error":")" + hostile + R"("})", R"({"message":")" + hostile + R"("})",
        R"({"detail":")" + hostile + R"("})"}) {
    INFO(gateway);
    f = openai::error_failure(reply(502, gateway));
    CHECK(f.message.find("FAKE") != std::string::npos);
    CHECK(clean(f.message));
  }
  // Printable text is kept as sent, UTF-8 included (U+00A0 and U+00E9 are not controls).
  f = openai::error_failure(reply(400, R"({"error":{"message":"caf\u00e9\u00a0x"}})"));
  CHECK(f.message == "caf\xc3\xa9\xc2\xa0x");

  // The model id is cleaned; the answer and the tool call's arguments are the caller's, as sent.
  const auto r = openai::read_chat(reply(
      200,
      R"({"model":"gpt\u001b[2J\nFAKE","choices":[{"message":{"content":"a\u001bb\nc","tool_calls":[)"
      R"({"id":"x","function":{"name":"f","arguments":"{\"k\":\"\\u001b\"}"}}]},"finish_reason":"stop"}]})"));
  REQUIRE(r);
  CHECK(r.value().model == "gpt [2J FAKE");
  CHECK(r.value().content ==
        "a\x1b"
        "b\nc");
  CHECK(r.value().tool_calls.at(0).arguments == R"({"k":"\u001b"})");
}

TEST_CASE("a structured refusal (message.refusal) is a content-policy failure") {
  const std::string usage =
      R"("usage":{"prompt_tokens":40,"completion_tokens":5,"total_tokens":45})";
  auto r = openai::read_chat(reply(
      200,
      R"({"choices":[{"message":{"content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}],)" +
          usage + "}"));
  REQUIRE_FALSE(r);
  CHECK(r.failure().code == "refusal");
  CHECK(r.failure().message == "I can't help with that.");
  CHECK(same(r.failure().usage, 40, 5, 45));
  const auto e = classify(r.failure());
  CHECK(e.kind == error_kind::content_policy);  // routed only to an opted-in policy entry
  CHECK_FALSE(e.transient);                     // never retried on the same model

  // Empty text beside the refusal, or the refusal as a content part: the same.
  for (const char* message : {R"({"content":"","refusal":"No."})",
                              R"({"content":[{"type":"refusal","refusal":"No."}]})"}) {
    INFO(message);
    r = openai::read_chat(reply(200, completion_with(message)));
    REQUIRE_FALSE(r);
    CHECK(r.failure().code == "refusal");
    CHECK(r.failure().message == "No.");
  }
  // The refusal's text is bounded and cleaned like any message.
  r = openai::read_chat(reply(200, completion_with(R"({"content":null,"refusal":"\u001b[2J)" +
                                                   std::string(100'000, 'x') + R"("})")));
  REQUIRE_FALSE(r);
  CHECK(r.failure().message.size() <= 403);
  CHECK(r.failure().message.rfind(" [2J", 0) == 0);
  // Text or a tool call beside a refusal is an answer; an empty refusal is no refusal.
  r = openai::read_chat(reply(200, completion_with(R"({"content":"Partly: yes.","refusal":"x"})")));
  REQUIRE(r);
  CHECK(r.value().content == "Partly: yes.");
  r = openai::read_chat(reply(
      200,
      completion_with(
          R"({"content":null,"refusal":"x","tool_calls":[{"id":"c","function":{"name":"f"}}]})")));
  REQUIRE(r);
  r = openai::read_chat(reply(200, completion_with(R"({"content":null,"refusal":""})")));
  REQUIRE_FALSE(r);
  CHECK(r.failure().kind == error_kind::invalid_response);
}

TEST_CASE(
    "content as an array of text parts is joined, and an empty answer cut by length is kept") {
  auto r = openai::read_chat(reply(
      200,
      completion_with(
          R"({"content":[{"type":"text","text":"Hello, "},{"type":"image_url","image_url":{"url":"x"}},)"
          R"({"type":"text","text":5},"text",null,{"text":"untyped"},{"type":"text","text":"world"}]})")));
  REQUIRE(r);
  CHECK(r.value().content == "Hello, world");
  // No text part at all is no text.
  for (const char* message : {R"({"content":[]})", R"({"content":[{"type":"image_url"}]})"}) {
    INFO(message);
    CHECK(openai::read_chat(reply(200, completion_with(message))).failure().kind ==
          error_kind::invalid_response);
  }
  // An empty text with finish_reason "length" is an answer the token limit cut: the caller sees
  // the finish_reason and decides.
  r = openai::read_chat(
      reply(200, R"({"choices":[{"message":{"content":""},"finish_reason":"length"}]})"));
  REQUIRE(r);
  CHECK(r.value().content.empty());
  CHECK(r.value().finish_reason == "length");
}

TEST_CASE("Gemini's array-wrapped error body is read, and JSON without an error object says so") {
  const std::string wrapped =
      R"([{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"},)"
      R"("usageMetadata":{"promptTokenCount":3}}])";
  auto f = openai::error_failure(reply(429, wrapped));
  CHECK(f.code == "RESOURCE_EXHAUSTED");
  CHECK(f.message == "Quota exceeded");
  CHECK(same(f.usage, 3, 0, 3));
  CHECK(classify(openai::error_failure(reply(502, wrapped))).kind == error_kind::rate_limited);
  REQUIRE(openai::parse_error_body(wrapped));
  CHECK(openai::parse_error_body(wrapped)->code == "RESOURCE_EXHAUSTED");

  // FastAPI-style {"detail": "..."} gives the message; the status decides.
  f = openai::error_failure(reply(404, R"({"detail":"Not Found"})"));
  CHECK(f.message == "Not Found");
  CHECK(f.code.empty());
  CHECK(classify(f).kind == error_kind::not_found);
  // Valid JSON with no error in it is not called "not JSON".
  for (const char* body : {R"({"detail":[{"loc":["body"],"msg":"field required"}]})",
                           R"({"status":"down"})", "[]", "[1]", "null"}) {
    INFO(body);
    f = openai::error_failure(reply(500, body));
    CHECK(f.message == "the error body holds no error object");
    CHECK(classify(f).kind == error_kind::server_error);
  }
  CHECK(openai::error_failure(reply(500, "<html>oops</html>")).message ==
        "the error body is not JSON");
  CHECK(openai::error_failure(reply(500, "")).message.empty());
}

TEST_CASE("messages, codes and types taken from a body are bounded") {
  const std::string long_text(100'000, 'x');
  auto f =
      openai::error_failure(reply(400, R"({"error":{"message":")" + long_text + R"(","type":")" +
                                           long_text + R"(","code":")" + long_text + R"("}})"));
  CHECK(f.message.size() <= 400 + 3);
  CHECK(f.code.size() <= 100 + 3);
  auto e = openai::parse_error_body(R"({"error":{"type":")" + long_text + R"("}})");
  REQUIRE(e);
  CHECK(e->type.size() <= 100 + 3);
  CHECK(e->code.size() <= 100 + 3);
  e = openai::parse_error_body(R"({"message":")" + long_text + R"(","code":")" + long_text +
                               R"("})");
  REQUIRE(e);
  CHECK(e->message.size() <= 400 + 3);
  CHECK(e->code.size() <= 100 + 3);
  e = openai::parse_error_body(R"({"error":{"status":")" + long_text + R"("}})");
  REQUIRE(e);
  CHECK(e->code.size() <= 100 + 3);

  // A cut never splits a UTF-8 character.
  std::string accents;
  for (int i = 0; i < 300; ++i) accents += "\xc3\xa9";  // é, two bytes each
  f = openai::error_failure(reply(400, R"({"error":{"message":"x)" + accents + R"("}})"));
  CHECK(f.message.size() <= 403);
  CHECK(valid_utf8(f.message));

  // The bounds are the caller's to set.
  openai::json_limits limits;
  limits.max_message = 10;
  limits.max_code = 4;
  f = openai::error_failure(
      reply(429, R"({"error":{"message":"slow down please","code":"rate_limit_exceeded"}})"),
      limits);
  CHECK(f.message == "slow down ...");
  CHECK(f.code == "rate...");
}

TEST_CASE("json_limits: bad bounds throw std::invalid_argument naming the bound") {
  auto throws_naming = [](openai::json_limits l, const std::string& name) {
    try {
      (void)openai::parse_error_body("{}", l);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what()).find(name) != std::string::npos;
    }
    return false;
  };
  openai::json_limits l;
  l.max_depth = 0;
  CHECK(throws_naming(l, "max_depth"));
  l = {};
  l.max_message = 0;
  CHECK(throws_naming(l, "max_message"));
  l = {};
  l.max_code = 0;
  CHECK(throws_naming(l, "max_code"));
  l = {};
  l.max_values = 0;
  CHECK(throws_naming(l, "max_values"));
  l = {};
  l.max_body = 0;
  CHECK(throws_naming(l, "max_body"));
  CHECK_THROWS_AS(openai::read_chat(reply(200, "{}"), l), std::invalid_argument);
  CHECK_NOTHROW(openai::json_limits{}.validate());
}

TEST_CASE("hostile shapes never throw: wrong types, huge numbers, arrays for objects") {
  const char* bodies[] = {
      "",
      "null",
      "0",
      "\"text\"",
      "[]",
      "[{}]",
      "1e400",
      R"({"choices":{"0":{}}})",
      R"({"choices":[null]})",
      R"({"choices":[[]]})",
      R"({"choices":[{"message":[]}]})",
      R"({"choices":[{"message":null,"finish_reason":7}]})",
      R"({"choices":[{"message":{"content":12,"tool_calls":{}}}]})",
      R"({"choices":[{"message":{"content":"x","tool_calls":[{"id":[],"function":{"name":"f","arguments":1e308}}]}}]})",
      R"({"choices":[{"message":{"content":"x"}}],"model":[],"id":{},"usage":{"prompt_tokens":1e308,"completion_tokens":-9223372036854775808,"total_tokens":-1e308}})",
      R"({"choices":[{"message":{"content":"x"}}],"usage":null,"usageMetadata":[]})",
      R"({"error":1})",
      R"({"error":[]})",
      R"({"error":null})",
      R"({"error":{"code":{},"type":[],"message":7,"status":1e300,"details":{}}})",
      R"({"error":{"status":"UNAVAILABLE","details":[1,null,"x",{"reason":5}]}})",
      R"({"type":"error","error":{"type":"invalid_request_error","message":null}})",
      R"({"type":[],"error":{"type":"invalid_request_error","message":"prompt is too long"}})",
      R"({"message":[],"code":{}})",
      R"({"message":"x","code":18446744073709551615})",
      R"({"error":"x")",
      "\xff\xfe",
      R"({"error":{"message":"\ud800"}})",
  };
  for (const char* body : bodies) {
    for (int status : {200, 400, 429, 500}) {
      INFO(status << " " << body);
      CHECK_NOTHROW(openai::parse_error_body(body));
      CHECK_NOTHROW(openai::error_failure(reply(status, body)));
      CHECK_NOTHROW(openai::read_chat(reply(status, body)));
      CHECK_NOTHROW(classify(openai::error_failure(reply(status, body))));
    }
  }
  // Among them, the one usable answer.
  const auto r = openai::read_chat(reply(200, bodies[14]));
  REQUIRE(r);
  CHECK(r.value().model.empty());
  CHECK_FALSE(r.value().usage);
}
