// Provider JSON: builds OpenAI-compatible chat requests and reads their answers and error bodies
// (OpenAI, Azure, Anthropic and Gemini envelopes) into values or `failure`s, within set bounds.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "failover/adapters/http.hpp"
#include "failover/core/error.hpp"
#include "failover/core/outcome.hpp"

namespace failover::openai {

// A tool (function) call the model asked for instead of, or beside, text.
struct tool_call {
  std::string id;         // the provider's id for this call, to send back with the tool's result
  std::string name;       // the function's name
  std::string arguments;  // the arguments as the raw JSON text the model wrote (may be invalid)
};

// A successful chat completion.
struct chat_completion {
  // The first choice's message text, as sent (text parts joined); "" when it has none. An empty
  // or short text with finish_reason "length" is an answer cut by the token limit.
  std::string content;
  std::vector<tool_call> tool_calls;  // the first choice's tool calls, in order
  std::string model;          // the model the provider says answered (control characters replaced)
  std::string finish_reason;  // "stop", "length", "tool_calls", ...
  std::string id;
  std::optional<token_usage> usage;  // the provider's token counts, when it sent them
  int status = 200;
};

// The error a provider described in its body.
struct error_body {
  std::string code;     // what classification reads: error.code, else error.type, else error.status
  std::string type;     // error.type as sent (shortened, as the code is)
  std::string message;  // error.message, shortened
  // Set when a provider documents a meaning its structured code does not carry: Anthropic's
  // "prompt is too long" invalid_request_error (context_window), Gemini's API_KEY_INVALID
  // reason (unauthorized).
  std::optional<error_kind> kind;
};

// How much of a provider's body is read. Bodies come from the network, so each bound holds
// whatever a server sends; the defaults are far above what any provider's real bodies need.
// Lengths are in bytes (of UTF-8), not characters.
struct json_limits {
  int max_depth = 64;             // nesting of arrays and objects (a chat answer needs 7)
  std::size_t max_message = 400;  // bytes of a provider's message kept in a failure
  std::size_t max_code = 100;     // bytes of a provider's code or type kept
  // Values in the body, counted before parsing as arrays, objects and commas outside strings.
  // A parser spends about 100 bytes per value, so the default bounds the parse near 100 MB; an
  // answer with log-probabilities for 4k tokens holds about 30 thousand values.
  std::size_t max_values = 1'000'000;
  // The body's size, checked before anything else: the HTTP adapters' own default bound.
  std::size_t max_body = std::size_t{16} << 20;

  void validate() const {
    if (max_depth < 1)
      throw std::invalid_argument("failover::openai::json_limits: max_depth must be >= 1");
    if (max_message < 1)
      throw std::invalid_argument("failover::openai::json_limits: max_message must be >= 1");
    if (max_code < 1)
      throw std::invalid_argument("failover::openai::json_limits: max_code must be >= 1");
    if (max_values < 1)
      throw std::invalid_argument("failover::openai::json_limits: max_values must be >= 1");
    if (max_body < 1)
      throw std::invalid_argument("failover::openai::json_limits: max_body must be >= 1");
  }
};

// Text a server chose, made safe to print: control characters (C0, DEL, and C1 as UTF-8 encodes
// them) become spaces, so a message cannot move a terminal's cursor, recolour it or fake a line
// of output. Everything else is kept as sent (C1 is read in its UTF-8 form, 0xC2 0x80-0x9F,
// which is how parsed JSON strings hold it). The adapter applies it to every message, code, type
// and model it takes from a body; callers can apply it to anything else they print.
inline std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F) {
      out += ' ';
    } else if (c == 0xC2 && i + 1 < text.size() &&
               (static_cast<unsigned char>(text[i + 1]) & 0xE0) == 0x80) {
      out += ' ';
      ++i;
    } else {
      out += text[i];
    }
  }
  return out;
}

namespace detail {

// Messages are for people and may be long; a few hundred characters carry the meaning. The cut
// never splits a UTF-8 sequence, so what is kept stays printable and serialisable.
inline std::string shorten(std::string text, std::size_t limit = 400) {
  if (text.size() > limit) {
    std::size_t cut = limit;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text.resize(cut);
    text += "...";
  }
  return text;
}

// A diagnostic string from a body: bounded, then made printable.
inline std::string diagnostic(std::string text, std::size_t limit) {
  return printable(shorten(std::move(text), limit));
}

inline std::string string_at(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Which bound a body exceeds, found without parsing it: its size, the nesting of its arrays and
// objects, or its number of values (arrays, objects and commas). Brackets and commas inside
// strings do not count. Linear and allocation-free, so a hostile body is refused before a parser
// builds millions of values; malformed text is left for the parser to reject.
enum class bound { none, body, depth, values };

inline bound exceeded(std::string_view body, const json_limits& limits) noexcept {
  if (body.size() > limits.max_body) return bound::body;
  int depth = 0;
  std::size_t values = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limits.max_depth) return bound::depth;
      if (++values > limits.max_values) return bound::values;
    } else if (c == ',') {
      if (++values > limits.max_values) return bound::values;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return bound::none;
}

inline std::string too_large(const char* what, bound b, const json_limits& limits) {
  switch (b) {
    case bound::body:
      return std::string(what) + " is larger than " + std::to_string(limits.max_body) +
             " bytes (json_limits::max_body); not read";
    case bound::values:
      return std::string(what) + " holds more than " + std::to_string(limits.max_values) +
             " values (json_limits::max_values); not read";
    default:
      return std::string(what) + " nests deeper than " + std::to_string(limits.max_depth) +
             " levels (json_limits::max_depth); not read";
  }
}

// Google's APIs may wrap an error body in an array ([{"error": {...}}]): its first element is
// the body.
inline const nlohmann::json& unwrapped(const nlohmann::json& j) {
  return j.is_array() && !j.empty() && j.front().is_object() ? j.front() : j;
}

// Parses a body (after the bounds are checked); discarded, never a throw, when it is not JSON.
inline nlohmann::json parse(std::string_view body) {
  return nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
}

// A token count as sent: a non-negative integer that fits in a long long, else nothing. Floats,
// negatives, strings and numbers too large are ignored rather than converted.
inline std::optional<long long> count_at(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_number_unsigned()) {
    const auto v = it->get<std::uint64_t>();
    if (v <= static_cast<std::uint64_t>(std::numeric_limits<long long>::max()))
      return static_cast<long long>(v);
    return std::nullopt;
  }
  if (it->is_number_integer()) {
    const auto v = it->get<std::int64_t>();
    if (v >= 0) return static_cast<long long>(v);
  }
  return std::nullopt;
}

// The token counts in a top-level body, in any of the providers' shapes:
//   OpenAI     "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}
//   Anthropic  "usage": {"input_tokens", "output_tokens"}
//   Gemini     "usageMetadata": {"promptTokenCount", "candidatesTokenCount", "totalTokenCount"}
// Nothing when no count is usable. A missing total is the sum, when that fits.
inline std::optional<token_usage> usage_at(const nlohmann::json& j) {
  if (!j.is_object()) return std::nullopt;
  struct shape {
    const char* object;
    const char* prompt;
    const char* completion;
    const char* total;
  };
  static constexpr shape shapes[] = {
      {"usage", "prompt_tokens", "completion_tokens", "total_tokens"},
      {"usage", "input_tokens", "output_tokens", "total_tokens"},
      {"usageMetadata", "promptTokenCount", "candidatesTokenCount", "totalTokenCount"},
  };
  for (const shape& s : shapes) {
    auto it = j.find(s.object);
    if (it == j.end() || !it->is_object()) continue;
    const auto prompt = count_at(*it, s.prompt);
    const auto completion = count_at(*it, s.completion);
    const auto total = count_at(*it, s.total);
    if (!prompt && !completion && !total) continue;
    token_usage u;
    u.prompt = prompt.value_or(0);
    u.completion = completion.value_or(0);
    if (total) {
      u.total = *total;
    } else if (u.prompt <= std::numeric_limits<long long>::max() - u.completion) {
      u.total = u.prompt + u.completion;
    }
    return u;
  }
  return std::nullopt;
}

// Anthropic documents no code for a prompt longer than the context window: it answers 400
// invalid_request_error with a message that starts "prompt is too long". That documented shape,
// and only it, is read here, so the classifier never has to read text.
inline bool anthropic_prompt_too_long(const nlohmann::json& j, const nlohmann::json& error) {
  static constexpr std::string_view prefix = "prompt is too long";
  if (string_at(j, "type") != "error" || string_at(error, "type") != "invalid_request_error")
    return false;
  const std::string message = string_at(error, "message");
  return message.size() >= prefix.size() &&
         failure::iequals(std::string_view(message).substr(0, prefix.size()), prefix);
}

// Gemini reports a bad API key as 400 INVALID_ARGUMENT (which would end a chain as a malformed
// request); its details name the reason API_KEY_INVALID, a structured field.
inline bool gemini_key_invalid(const nlohmann::json& error) {
  auto details = error.find("details");
  if (details == error.end() || !details->is_array()) return false;
  for (const auto& d : *details)
    if (string_at(d, "reason") == "API_KEY_INVALID") return true;
  return false;
}

inline std::optional<error_body> read_error(const nlohmann::json& j, const json_limits& limits) {
  if (!j.is_object()) return std::nullopt;
  error_body e;
  auto it = j.find("error");
  if (it != j.end() && it->is_object()) {
    // A number or null is not a code; Gemini's string is `status` ("RESOURCE_EXHAUSTED").
    std::string code = string_at(*it, "code");
    std::string type = string_at(*it, "type");
    if (code.empty()) code = type.empty() ? string_at(*it, "status") : type;
    e.code = diagnostic(std::move(code), limits.max_code);
    e.type = diagnostic(std::move(type), limits.max_code);
    e.message = diagnostic(string_at(*it, "message"), limits.max_message);
    if (anthropic_prompt_too_long(j, *it)) e.kind = error_kind::context_window;
    if (gemini_key_invalid(*it)) e.kind = error_kind::unauthorized;
    return e;
  }
  if (it != j.end() && it->is_string()) {
    e.message = diagnostic(it->get<std::string>(), limits.max_message);
    return e;
  }
  if (j.contains("message")) {
    e.message = diagnostic(string_at(j, "message"), limits.max_message);
    e.code = diagnostic(string_at(j, "code"), limits.max_code);
    return e;
  }
  // FastAPI-style servers (many self-hosted gateways) answer {"detail": "Not Found"}.
  if (auto d = j.find("detail"); d != j.end() && d->is_string()) {
    e.message = diagnostic(d->get<std::string>(), limits.max_message);
    return e;
  }
  return std::nullopt;
}

inline void keep_headers(failure& f, const http::response& r) {
  for (const auto& h : r.headers) f.header(h.first, h.second);
}

}  // namespace detail

// Reads an error body. Recognised shapes:
//   OpenAI-compatible and Azure  {"error": {"message", "type", "param", "code"}}
//   Anthropic                    {"type": "error", "error": {"type", "message"}}
//   Gemini                       {"error": {"code": 429, "message", "status", "details"}},
//                                also as the first element of an array
//   gateways                     {"error": "text"}, {"message": "text"}, {"detail": "text"}
// Nothing when the body is not JSON, exceeds a bound, or holds no error. Strings are bounded and
// their control characters replaced. Never throws on what the body holds.
inline std::optional<error_body> parse_error_body(std::string_view body,
                                                  const json_limits& limits = {}) {
  limits.validate();
  if (detail::exceeded(body, limits) != detail::bound::none) return std::nullopt;
  return detail::read_error(detail::unwrapped(detail::parse(body)), limits);
}

// A non-2xx response as a failure: status, the provider's code and message, the tokens the body
// says were used, and the retry headers. A body that is not JSON (a proxy's error page), holds no
// error, or exceeds a bound leaves the status to decide.
inline failure error_failure(const http::response& r, const json_limits& limits = {}) {
  limits.validate();
  failure f = http::status_failure(r);
  if (const auto b = detail::exceeded(r.body, limits); b != detail::bound::none) {
    f.message = detail::too_large("the error body", b, limits);
    return f;
  }
  const nlohmann::json parsed = detail::parse(r.body);
  const nlohmann::json& j = detail::unwrapped(parsed);
  if (auto e = detail::read_error(j, limits)) {
    f.code = std::move(e->code);
    f.message = std::move(e->message);
    f.kind = e->kind;
  } else if (parsed.is_discarded()) {
    if (!r.body.empty()) f.message = "the error body is not JSON";
  } else {
    f.message = "the error body holds no error object";
  }
  f.usage = detail::usage_at(j);
  return f;
}

// A 2xx response passes; anything else becomes error_failure(r).
inline outcome<http::response> check(http::response r, const json_limits& limits = {}) {
  if (r.ok()) return r;
  return error_failure(r, limits);
}

namespace detail {

// The first choice's tool calls: {"id", "type": "function", "function": {"name", "arguments"}}.
// `arguments` is kept as the text the model wrote (OpenAI sends a string); a server that sends an
// object gets it back as compact JSON. An entry without a function name cannot be called: skipped.
inline std::vector<tool_call> tool_calls_at(const nlohmann::json& message) {
  std::vector<tool_call> calls;
  auto list = message.find("tool_calls");
  if (list == message.end() || !list->is_array()) return calls;
  for (const auto& entry : *list) {
    if (!entry.is_object()) continue;
    auto function = entry.find("function");
    if (function == entry.end() || !function->is_object()) continue;
    tool_call call;
    call.name = string_at(*function, "name");
    if (call.name.empty()) continue;
    call.id = string_at(entry, "id");
    auto arguments = function->find("arguments");
    if (arguments != function->end()) {
      if (arguments->is_string()) {
        call.arguments = arguments->get<std::string>();
      } else if (arguments->is_object() || arguments->is_array()) {
        call.arguments = arguments->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      }
    }
    calls.push_back(std::move(call));
  }
  return calls;
}

// The first choice's text: `content` as a string, or joined from an array of parts (only
// {"type": "text", "text": "..."} parts count). Nothing when the message has no text; a refusal
// part sets `refusal` when the message has none of its own.
inline std::optional<std::string> text_at(const nlohmann::json& message, std::string& refusal) {
  auto content = message.find("content");
  if (content == message.end()) return std::nullopt;
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) return std::nullopt;
  std::optional<std::string> text;
  for (const auto& part : *content) {
    const std::string type = string_at(part, "type");
    auto field = part.is_object() ? part.find(type) : part.end();
    if (field == part.end() || !field->is_string()) continue;
    if (type == "text") {
      if (!text) text.emplace();
      *text += field->get<std::string>();
    } else if (type == "refusal" && refusal.empty()) {
      refusal = field->get<std::string>();
    }
  }
  return text;
}

}  // namespace detail

// Reads a chat completion: the first choice's text and tool calls, finish_reason, the model the
// provider names, and its token counts. Refusals are not answers: a 200 whose first choice ended
// with finish_reason "content_filter" is a failure with code content_filter, and one whose
// message carries only a `refusal` (OpenAI's structured refusal) a failure with code refusal
// and the refusal as its message; both are content_policy errors. A body that is not JSON,
// exceeds a bound, or whose first choice has neither text nor a tool call, is an
// invalid_response failure. Failures keep the token counts the body reported. Never throws on
// what the body holds.
inline outcome<chat_completion> read_chat(const http::response& r, const json_limits& limits = {}) {
  if (!r.ok()) return error_failure(r, limits);
  limits.validate();
  std::optional<token_usage> usage;
  auto failed = [&](failure f) {
    f.status = r.status;
    f.usage = usage;
    detail::keep_headers(f, r);
    return f;
  };
  auto invalid = [&](std::string why) {
    return failed(failure::of(error_kind::invalid_response, std::move(why)));
  };
  if (const auto b = detail::exceeded(r.body, limits); b != detail::bound::none)
    return invalid(detail::too_large("response body", b, limits));
  const nlohmann::json j = detail::parse(r.body);
  if (j.is_discarded()) return invalid("response body is not JSON");
  if (!j.is_object()) return invalid("response body is not a JSON object");
  usage = detail::usage_at(j);
  auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array() || choices->empty())
    return invalid("response has no choices");
  const nlohmann::json& choice = choices->front();
  chat_completion c;
  c.finish_reason = detail::string_at(choice, "finish_reason");
  if (c.finish_reason == "content_filter") {
    return failed(failure::http(r.status, "content_filter",
                                "the provider's content filter withheld the answer "
                                "(finish_reason content_filter)"));
  }
  auto message = choice.is_object() ? choice.find("message") : choice.end();
  if (!choice.is_object() || message == choice.end() || !message->is_object())
    return invalid("first choice has no message");
  c.tool_calls = detail::tool_calls_at(*message);
  std::string refusal = detail::string_at(*message, "refusal");
  const std::optional<std::string> text = detail::text_at(*message, refusal);
  if (c.tool_calls.empty() && (!text || text->empty()) && !refusal.empty())
    return failed(failure::http(r.status, "refusal",
                                detail::diagnostic(std::move(refusal), limits.max_message)));
  if (!text && c.tool_calls.empty())
    return invalid("first choice has neither text content nor a tool call");
  if (text) c.content = *text;
  c.model = printable(detail::string_at(j, "model"));
  c.id = detail::string_at(j, "id");
  c.usage = usage;
  c.status = r.status;
  return c;
}

// The body of a one-message chat completion request. Invalid UTF-8 in the prompt is replaced,
// not rejected, so any input can be sent.
inline std::string chat_request(std::string_view model, std::string_view prompt) {
  nlohmann::json j = {
      {"model", std::string(model)},
      {"messages", nlohmann::json::array({{{"role", "user"}, {"content", std::string(prompt)}}})}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace failover::openai
