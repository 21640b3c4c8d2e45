// Provider JSON: builds OpenAI-compatible chat requests and reads their answers and error bodies
// (OpenAI, Azure and Anthropic envelopes) into values or `failure`s with the provider's error code.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "failover/adapters/http.hpp"
#include "failover/error.hpp"
#include "failover/outcome.hpp"

namespace failover::openai {

// A tool (function) call the model asked for instead of, or beside, text.
struct tool_call {
  std::string id;         // the provider's id for this call, to send back with the tool's result
  std::string name;       // the function's name
  std::string arguments;  // the arguments as the raw JSON text the model wrote (may be invalid)
};

// A successful chat completion.
struct chat_completion {
  std::string content;                // the first choice's message text ("" when it has none)
  std::vector<tool_call> tool_calls;  // the first choice's tool calls, in order
  std::string model;                  // the model the provider says answered
  std::string finish_reason;          // "stop", "length", "tool_calls", ...
  std::string id;
  std::optional<token_usage> usage;  // the provider's token counts, when it sent them
  int status = 200;
};

// The error a provider described in its body.
struct error_body {
  std::string code;     // what classification reads: error.code, else error.type
  std::string type;     // error.type as sent
  std::string message;  // error.message, shortened
};

namespace detail {

// Messages are for people and may be long; a few hundred characters carry the meaning.
inline std::string shorten(std::string text, std::size_t limit = 400) {
  if (text.size() > limit) {
    text.resize(limit);
    text += "...";
  }
  return text;
}

inline std::string string_at(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

inline nlohmann::json parse(std::string_view body) {
  return nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
}

}  // namespace detail

// Reads an error body. Recognised shapes:
//   OpenAI-compatible and Azure  {"error": {"message", "type", "param", "code"}}
//   Anthropic                    {"type": "error", "error": {"type", "message"}}
//   gateways                     {"error": "text"} or {"message": "text"}
// Nothing when the body is not JSON or holds no error.
inline std::optional<error_body> parse_error_body(std::string_view body) {
  const nlohmann::json j = detail::parse(body);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  error_body e;
  auto it = j.find("error");
  if (it != j.end() && it->is_object()) {
    const std::string code = detail::string_at(*it, "code");  // a number or null is not a code
    e.type = detail::string_at(*it, "type");
    e.code = code.empty() ? e.type : code;
    e.message = detail::shorten(detail::string_at(*it, "message"));
    return e;
  }
  if (it != j.end() && it->is_string()) {
    e.message = detail::shorten(it->get<std::string>());
    return e;
  }
  if (j.contains("message")) {
    e.message = detail::shorten(detail::string_at(j, "message"));
    e.code = detail::string_at(j, "code");
    return e;
  }
  return std::nullopt;
}

// A non-2xx response as a failure: status, the provider's code and message, and the retry
// headers. A body that is not JSON (a proxy's error page) leaves the status to decide.
inline failure error_failure(const http::response& r) {
  failure f = http::status_failure(r);
  if (auto e = parse_error_body(r.body)) {
    f.code = std::move(e->code);
    f.message = std::move(e->message);
  } else if (!r.body.empty()) {
    f.message = "the error body is not JSON";
  }
  return f;
}

// A 2xx response passes; anything else becomes error_failure(r).
inline outcome<http::response> check(http::response r) {
  if (r.ok()) return r;
  return error_failure(r);
}

// Reads a chat completion. A 200 whose first choice ended with finish_reason "content_filter" is
// a refusal, not an answer: a failure with code content_filter (a content_policy error). A body
// that is not JSON, or has no text in its first choice, is an invalid_response failure.
inline outcome<chat_completion> read_chat(const http::response& r) {
  if (!r.ok()) return error_failure(r);
  auto invalid = [&](std::string why) {
    failure f = failure::of(error_kind::invalid_response, std::move(why));
    f.status = r.status;
    for (const auto& h : r.headers) f.header(h.first, h.second);
    return f;
  };
  const nlohmann::json j = detail::parse(r.body);
  if (j.is_discarded()) return invalid("response body is not JSON");
  if (!j.is_object()) return invalid("response body is not a JSON object");
  auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array() || choices->empty())
    return invalid("response has no choices");
  const nlohmann::json& choice = (*choices)[0];
  chat_completion c;
  c.finish_reason = detail::string_at(choice, "finish_reason");
  if (c.finish_reason == "content_filter") {
    failure f = failure::http(r.status, "content_filter",
                              "the provider's content filter withheld the answer "
                              "(finish_reason content_filter)");
    for (const auto& h : r.headers) f.header(h.first, h.second);
    return f;
  }
  auto message = choice.is_object() ? choice.find("message") : choice.end();
  if (!choice.is_object() || message == choice.end() || !message->is_object())
    return invalid("first choice has no message");
  auto content = message->find("content");
  if (content == message->end() || !content->is_string())
    return invalid("first choice has no text content");
  c.content = content->get<std::string>();
  c.model = detail::string_at(j, "model");
  c.id = detail::string_at(j, "id");
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
