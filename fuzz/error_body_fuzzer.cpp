// Fuzzes the provider error-body parser (failover/adapters/openai.hpp) with arbitrary bodies and
// with well-formed OpenAI, Anthropic and gateway envelopes built from fuzzed strings, and
// classifies what it reads: no crash, no exception, messages stay short, the code is error.code
// else error.type, and a well-formed envelope is read as nlohmann-json itself reads it.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include <failover/adapters/openai.hpp>
#include <failover/core/classifier.hpp>

#include "fuzz_check.hpp"

namespace {

using nlohmann::json;

constexpr std::size_t max_message = 400 + 3;  // detail::shorten: 400 characters and "..."
constexpr std::size_t max_code = 100;         // json_limits::max_code, before the "..."

std::string field(const json& j, const char* a, const char* b = nullptr) {
  const json* at = &j;
  for (const char* key : {a, b}) {
    if (!key) break;
    if (!at->is_object() || !at->contains(key)) return {};
    at = &(*at)[key];
  }
  return at->is_string() ? at->get<std::string>() : std::string();
}

// A JSON value that is sometimes a string and sometimes something a string must not be taken from.
json some_value(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange(0, 5)) {
    case 0:
      return nullptr;
    case 1:
      return in.ConsumeIntegral<int>();
    case 2:
      return json::array({in.ConsumeRandomLengthString(8)});
    default:
      return in.ConsumeRandomLengthString(600);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  std::string body;
  const int shape = in.ConsumeIntegralInRange(0, 3);
  if (shape == 0) {
    body = in.ConsumeRandomLengthString(4096);  // anything at all
  } else {
    json j;
    if (shape == 1) {  // OpenAI-compatible and Azure
      j["error"] = {{"message", some_value(in)},
                    {"type", some_value(in)},
                    {"code", some_value(in)},
                    {"param", some_value(in)}};
    } else if (shape == 2) {  // Anthropic
      j["type"] = "error";
      j["error"] = {{"type", some_value(in)}, {"message", some_value(in)}};
    } else {  // gateways
      if (in.ConsumeBool())
        j["error"] = some_value(in);
      else
        j["message"] = some_value(in), j["code"] = some_value(in);
    }
    // Invalid UTF-8 in a fuzzed string is replaced, as a server's JSON library would.
    body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  const auto parsed = failover::openai::parse_error_body(body);
  if (parsed) FUZZ_CHECK(parsed->message.size() <= max_message);

  if (shape != 0) {
    // Read back as the parser should read it.
    const json j = json::parse(body);
    FUZZ_CHECK(parsed.has_value() ==
               ((j.contains("error") && (j["error"].is_object() || j["error"].is_string())) ||
                j.contains("message")));
    if (parsed && j.contains("error") && j["error"].is_object()) {
      const std::string code = field(j, "error", "code");
      const std::string type = field(j, "error", "type");
      // Bounded, with control characters replaced (detail::diagnostic).
      FUZZ_CHECK(parsed->type == failover::openai::detail::diagnostic(type, max_code));
      FUZZ_CHECK(parsed->code ==
                 failover::openai::detail::diagnostic(code.empty() ? type : code, max_code));
      FUZZ_CHECK(parsed->message ==
                 failover::openai::detail::diagnostic(field(j, "error", "message"), 400));
    }
  }

  // The whole response as the adapter turns it into a failure, then classified.
  failover::http::response r;
  r.status = in.ConsumeIntegralInRange(100, 599);
  for (int n = in.ConsumeIntegralInRange(0, 3); n > 0; --n)
    r.headers.emplace_back(
        in.ConsumeBool() ? std::string("retry-after") : in.ConsumeRandomLengthString(16),
        in.ConsumeRandomLengthString(32));
  r.body = std::move(body);
  const failover::failure f = failover::openai::error_failure(r);
  FUZZ_CHECK(f.status == r.status);
  FUZZ_CHECK(f.code == (parsed ? parsed->code : std::string()));
  FUZZ_CHECK(f.message.size() <= max_message);
  const failover::error e = failover::classifier{}.classify(f, failover::wall_time{});
  FUZZ_CHECK(e.status == r.status && e.code == failover::detail::redact(f.code));
  return 0;
}
