// failover-chat: sends one chat completion to an OpenAI-compatible endpoint through a fallback
// chain and prints the answer and the trace. Without --base-url (and --config) it runs a demo
// against an embedded mock provider on 127.0.0.1, so the whole story shows with no key or network.
#include <failover/adapters/httplib.hpp>
#include <failover/adapters/openai.hpp>
#include <failover/failover.hpp>
#include <failover/testing/mock_provider.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "options.hpp"

namespace {

using completion = failover::openai::chat_completion;
using chain_type = failover::fallback_chain<completion(const std::string&)>;
using result_type = failover::result<completion>;
using namespace std::chrono_literals;

constexpr std::string_view usage = R"(usage: failover-chat [flags] PROMPT
       failover-chat [timing flags]   (no --base-url and no --config: the built-in demo)

Sends one chat completion to an OpenAI-compatible endpoint through a fallback chain. The
answer goes to stdout, the trace of every attempt and wait to stderr.

  --base-url URL            the endpoint, e.g. https://api.openai.com/v1
  --model NAME              a model of the standard chain, tried in order (repeatable)
  --context-fallback NAME   takes over when the input is too long (repeatable)
  --policy-fallback NAME    takes over after a content-policy refusal (repeatable, opt-in)
  --max-attempts N          attempts per model, the first included (default 5)
  --base-delay-ms MS        first backoff delay (default 1000)
  --max-delay-ms MS         backoff cap (default 30000)
  --jitter KIND             none | full | equal | decorrelated | rising (default rising)
  --deadline-ms MS          for the whole call, waits included (default: none)
  --connect-timeout-ms MS   per attempt (default 10000)
  --read-timeout-ms MS      per attempt (default 60000)
  --max-hops N              models tried in one call (default 5)
  --max-server-wait-ms MS   a longer server-requested wait falls back at once (default 60000)
  --max-read-timeout-retries N
                            retries after a read timeout, per model (default 1)
  --api-key-env NAME        the variable holding the key (default OPENAI_API_KEY)
  --config FILE             a JSON file with these settings and per-model routes
  --trace-json              one JSON object on stdout: answer, attempts, error

The key is sent as "Authorization: Bearer <key>" and never printed.
A failed call's last line ends with "; hint: ..." when a flag is known to help.
Exit status: 0 answered, 1 the chain failed, 2 bad usage or a bad config file.
)";

// Every key this process holds is masked in every diagnostic it prints (never in the answer): a
// provider may echo a key in an error message, and the library's own redaction only knows the
// common key shapes.
class scrubber {
 public:
  void add(std::string secret) {
    if (secret.size() >= 4) secrets_.push_back(std::move(secret));  // shorter is not a key
  }
  std::string operator()(std::string text) const {
    for (const auto& s : secrets_) {
      for (std::size_t at = text.find(s); at != std::string::npos; at = text.find(s, at + 10))
        text.replace(at, s.size(), "[redacted]");
    }
    return text;
  }

 private:
  std::vector<std::string> secrets_;
};

// The longest message and code printed. read_chat is asked to keep far longer ones, so that a key
// is masked whole, in the unescaped text, before the cut.
constexpr std::size_t shown_message = 400;
constexpr std::size_t shown_code = 100;

// Cuts text to `limit` bytes without splitting a UTF-8 sequence, marking the cut with "...".
std::string clip(std::string text, std::size_t limit) {
  if (text.size() <= limit) return text;
  std::size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  text.resize(cut);
  return text + "...";
}

// A failure as this program shows it: the keys masked in the whole message and code, then each
// cut, with control characters replaced (a transport message may quote a server as well).
failover::failure shown(failover::failure f, const scrubber& mask) {
  f.message = failover::openai::printable(clip(mask(std::move(f.message)), shown_message));
  f.code = failover::openai::printable(clip(mask(std::move(f.code)), shown_code));
  return f;
}

// a + b for token counts (never negative): a server may send counts near LLONG_MAX.
long long saturating_add(long long a, long long b) {
  return a > std::numeric_limits<long long>::max() - b ? std::numeric_limits<long long>::max()
                                                       : a + b;
}

// A key as read from the environment: surrounding whitespace (a secret file's newline) removed.
// Nothing else is changed; a key that still holds a control character is refused by the caller,
// since a CR or LF in a header value would start a header of the server's choosing.
std::string trimmed_key(std::string_view value) {
  constexpr std::string_view space = " \t\r\n\v\f";
  const std::size_t first = value.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  const std::size_t last = value.find_last_not_of(space);
  return std::string(value.substr(first, last - first + 1));
}

bool has_control(std::string_view text) {
  for (char c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) return true;
  return false;
}

// An environment variable's name. Anything else given as --api-key-env is likelier to be the key
// itself, pasted where its variable's name belongs.
bool is_variable_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    const bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

// A name that could be a key: not a variable name, or long with lower-case letters and digits
// (variable names are upper-case words; keys such as gsk_... are random). Such a name is never
// printed.
bool looks_like_key(std::string_view name) {
  if (!is_variable_name(name)) return true;
  bool lower = false;
  bool digit = false;
  for (char c : name) {
    lower = lower || (c >= 'a' && c <= 'z');
    digit = digit || (c >= '0' && c <= '9');
  }
  return name.size() >= 20 && lower && digit;
}

// What the messages call a key variable: "$NAME", unless the name could be a key itself.
std::string shown_variable(const std::string& name) {
  return looks_like_key(name) ? std::string("the variable --api-key-env names") : "$" + name;
}

// A base URL with a user, a password, a query or a fragment may hold a key, so its rejection
// must not quote it.
std::string unsafe_url_part(std::string_view url) {
  const std::size_t scheme = url.find("://");
  const std::size_t from = scheme == std::string_view::npos ? 0 : scheme + 3;
  const std::size_t end = url.find_first_of("/?#", from);
  const std::string_view authority =
      url.substr(from, end == std::string_view::npos ? std::string_view::npos : end - from);
  if (authority.find('@') != std::string_view::npos) return "a user or password";
  if (url.find_first_of("?#", from) != std::string_view::npos) return "a query or fragment";
  return {};
}

// Why the URL parser refused a base URL, in words that never quote it: a mistyped URL may hold a
// key anywhere (https:/user:KEY@host, https://host:KEY/v1, htps://host/v1/KEY), and the parser's
// own message quotes the text.
std::string url_fault(std::string_view url) {
  std::string_view rest;
  if (url.rfind("https://", 0) == 0) {
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    return "it must start with http:// or https://";
  }
  const std::string_view authority = rest.substr(0, rest.find('/'));
  if (authority.empty()) return "it names no host after the scheme";
  const std::size_t bracket = authority.rfind(']');
  const std::size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    const std::string_view port = authority.substr(colon + 1);
    const bool digits = !port.empty() && port.size() <= 5 &&
                        port.find_first_not_of("0123456789") == std::string_view::npos;
    if (!digits || std::stoi(std::string(port)) < 1 || std::stoi(std::string(port)) > 65535)
      return "its port is not a number from 1 to 65535";
  }
  return "it is not of the form http(s)://host[:port][/path]";
}

double to_ms(failover::duration d) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(d).count()) /
         1000.0;
}

// One chain entry, resolved from the flags and the config file.
struct entry_plan {
  std::string name;
  failover::role role = failover::role::standard;
  std::string upstream;  // sent as "model"
  std::string base_url;
  std::string base_url_where;  // the flag or config key it came from, for errors
  std::string key_env;         // "" = send no key
};

std::vector<entry_plan> plan_entries(const chat::options& o) {
  if (o.models.empty())
    throw chat::usage_error("no model to call: give --model NAME (or \"models\" in the config)");
  chat::check_models(o);
  std::vector<entry_plan> plans;
  auto add = [&](const std::string& name, failover::role role) {
    entry_plan p;
    p.name = name;
    p.role = role;
    p.upstream = name;
    p.base_url = o.base_url;
    p.base_url_where = o.base_url_where;
    p.key_env = o.api_key_env;
    if (auto it = o.routes.find(name); it != o.routes.end()) {
      if (!it->second.upstream.empty()) p.upstream = it->second.upstream;
      if (!it->second.base_url.empty()) {
        p.base_url = it->second.base_url;
        p.base_url_where = it->second.base_url_where;
      }
      if (!it->second.api_key_env.empty()) p.key_env = it->second.api_key_env;
    }
    if (!p.key_env.empty() && !is_variable_name(p.key_env))
      throw chat::usage_error("the key variable of model '" + name +
                              "' (--api-key-env or api_key_env) is not a variable name; it is "
                              "not shown, as it may be a key: give the NAME of the variable "
                              "that holds the key, e.g. OPENAI_API_KEY");
    if (p.base_url.empty())
      throw chat::usage_error("model '" + name +
                              "' has no base URL: give --base-url, or base_url in the config "
                              "file (at the top or in its model_list entry)");
    const std::string which = "base URL of model '" + name + "' (" + p.base_url_where + ")";
    if (const std::string part = unsafe_url_part(p.base_url); !part.empty())
      throw chat::usage_error(which + ": it holds " + part +
                              ", which is not allowed and not shown (it may hold a key: give "
                              "the key through --api-key-env)");
    try {
      static_cast<void>(failover::http::base_url::parse(p.base_url));
    } catch (const std::invalid_argument&) {
      // Never the parser's message: it quotes the URL.
      throw chat::usage_error(which + ": " + url_fault(p.base_url) +
                              " (the URL is not shown: it may hold a key)");
    }
    plans.push_back(std::move(p));
  };
  for (const auto& m : o.models) add(m, failover::role::standard);
  for (const auto& m : o.context_fallbacks) add(m, failover::role::context_window);
  for (const auto& m : o.policy_fallbacks) add(m, failover::role::content_policy);
  return plans;
}

struct session {
  std::unique_ptr<chain_type> chain;
  // Shared with the entries' callables, which mask each failure's message before cutting it.
  std::shared_ptr<scrubber> masks = std::make_shared<scrubber>();
  std::vector<std::string> notes;  // said once on stderr before the call
  struct key_source {
    std::string variable;  // "" = no key is sent
    bool set = false;
  };
  std::map<std::string, key_source, std::less<>> keys;  // per entry, for the hints
};

session build_session(const chat::options& o) {
  if (o.max_delay_ms < o.base_delay_ms)
    throw chat::usage_error(
        "--max-delay-ms (max_delay_ms) must be at least --base-delay-ms "
        "(base_delay_ms)");
  const auto plans = plan_entries(o);
  session s;
  failover::chain_options bounds;
  bounds.max_hops = static_cast<int>(o.max_hops);
  // --max-attempts times --max-hops already bounds the call; a separate total cap would only
  // make those two flags stop meaning what they say.
  bounds.max_total_attempts = std::numeric_limits<int>::max();
  if (o.deadline_ms) bounds.deadline = std::chrono::milliseconds(*o.deadline_ms);
  s.chain = std::make_unique<chain_type>(bounds);

  failover::retry_options retry;
  retry.max_attempts = static_cast<int>(o.max_attempts);
  retry.max_server_wait = std::chrono::milliseconds(o.max_server_wait_ms);
  retry.max_read_timeout_retries = static_cast<int>(o.max_read_timeout_retries);
  const failover::backoff_options backoff{std::chrono::milliseconds(o.base_delay_ms), 2.0,
                                          std::chrono::milliseconds(o.max_delay_ms), o.jitter};
  failover::http::timeouts limits;
  limits.connect = std::chrono::milliseconds(o.connect_timeout_ms);
  limits.read = std::chrono::milliseconds(o.read_timeout_ms);
  // Messages and codes are kept long by read_chat and cut by shown() once the keys are masked in
  // them: masked after the cut, a key across it would leave its first characters.
  failover::openai::json_limits read_limits;
  read_limits.max_message = 64 * 1024;
  read_limits.max_code = 64 * 1024;

  for (const auto& p : plans) {
    std::string key;
    s.keys[p.name] = {p.key_env, false};
    if (!p.key_env.empty()) {
      const char* value = std::getenv(p.key_env.c_str());
      key = trimmed_key(value != nullptr ? value : "");
      if (has_control(key))
        throw chat::usage_error("the key in " + shown_variable(p.key_env) +
                                " holds a control character (a line break or tab inside it); "
                                "it is not used and not shown: set the variable to the key alone");
      if (!key.empty()) {
        s.masks->add(key);
        s.keys[p.name].set = true;
      } else if (looks_like_key(p.key_env)) {
        throw chat::usage_error("the key variable of model '" + p.name +
                                "' (--api-key-env or api_key_env) is not set, and its name "
                                "looks like a key, so it is not shown: give the NAME of the "
                                "variable that holds the key");
      } else {
        s.notes.push_back("note: " + p.key_env + " is not set; calling " + p.name +
                          " without an Authorization header");
      }
    }
    auto endpoint = std::make_shared<failover::http::httplib_endpoint>(p.base_url, limits);
    s.chain->add(
        p.name,
        [endpoint, upstream = p.upstream, key = std::move(key), read_limits,
         masks = std::shared_ptr<const scrubber>(s.masks)](
            const failover::attempt_context& ctx,
            const std::string& prompt) -> failover::outcome<completion> {
          httplib::Headers headers;
          if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
          auto sent =
              endpoint->post(ctx, "/chat/completions",
                             failover::openai::chat_request(upstream, prompt), std::move(headers));
          if (!sent) return shown(std::move(sent).failure(), *masks);
          // The body itself is never masked: a key that is a common word would corrupt the
          // answer, and a JSON-escaped one would not match.
          auto read = failover::openai::read_chat(sent.value(), read_limits);
          if (!read) return shown(std::move(read).failure(), *masks);
          return read;
        },
        p.role, retry, failover::exponential_backoff<>(backoff));
  }
  return s;
}

// Prints diagnostics line by line, each cleaned of control characters: whatever reached the text
// from a server cannot move the cursor or add a line of its own.
void print_lines(std::FILE* out, const std::string& text, std::string_view indent) {
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = text.find('\n', start);
    fmt::print(out, "{}{}\n", indent,
               failover::openai::printable(std::string_view(text).substr(start, end - start)));
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

// What the failed attempts were billed, summed over those whose response said; none when none did.
std::optional<failover::token_usage> failed_usage(const result_type& r) {
  std::optional<failover::token_usage> sum;
  for (const auto& a : r.trace().attempts()) {
    if (a.ok || !a.error().usage) continue;
    if (!sum) sum.emplace();
    sum->prompt = saturating_add(sum->prompt, a.error().usage->prompt);
    sum->completion = saturating_add(sum->completion, a.error().usage->completion);
    sum->total = saturating_add(sum->total, a.error().usage->total);
  }
  return sum;
}

// "; model gpt-4o-2024-08-06; tokens 12 prompt + 30 completion = 42; failed attempts billed 9
// tokens": what the answer and the failures cost, for the summary line.
std::string costs(const result_type& r) {
  std::string out;
  if (r && !r->model.empty()) out += "; model " + r->model;
  if (r && r->usage)
    out += fmt::format("; tokens {} prompt + {} completion = {}", r->usage->prompt,
                       r->usage->completion, r->usage->total);
  if (const auto failed = failed_usage(r))
    out += fmt::format("; failed attempts billed {} tokens", failed->total);
  return out;
}

std::string summary(const result_type& r, const scrubber& scrub) {
  const auto& t = r.trace();
  if (r) {
    return scrub(fmt::format(
        "served by {}{} after {} attempt{} in {}{}", r.served_by(),
        r.trace().policy_rerouted() ? " (REROUTED after a content-policy refusal)"
        : r.fallback_used()         ? " (FALLBACK)"
                                    : "",
        t.size(), t.size() == 1 ? "" : "s", failover::format_duration(t.elapsed()), costs(r)));
  }
  return scrub(fmt::format("failed after {} attempt{} ({}): {}{}", t.size(),
                           t.size() == 1 ? "" : "s", r.stop(), r.error(), costs(r)));
}

// The library's remedy in this program's terms: the flag to change (also a config key: the
// flag's name with '_' for '-'). "" when no setting is known to help.
std::string hint(const result_type& r, const session& s, const chat::options& o) {
  switch (failover::remedy_for(r)) {
    case failover::remedy::none:
      return {};
    case failover::remedy::add_context_window_entry:
      return "the input is too long for the models tried: add a --context-fallback (a model "
             "with a longer context window)";
    case failover::remedy::add_content_policy_entry:
      return "add a --policy-fallback, if rerouting is acceptable";
    case failover::remedy::raise_deadline:
      return o.deadline_ms ? fmt::format("raise --deadline-ms (now {})", *o.deadline_ms)
                           : std::string("raise --deadline-ms");
    case failover::remedy::check_credentials: {
      const auto it = s.keys.find(r.error().model);
      if (it == s.keys.end() || it->second.variable.empty()) return "check the credentials";
      const std::string var = shown_variable(it->second.variable);
      return it->second.set ? "check the key in " + var : var + " is not set: set it to the key";
    }
    case failover::remedy::raise_max_server_wait: {
      const auto& wait = r.error().retry_after;
      return fmt::format("raise --max-server-wait-ms (now {}{})", o.max_server_wait_ms,
                         wait ? "; the server asked for " + failover::format_duration(*wait) : "");
    }
    case failover::remedy::raise_max_hops:
      return fmt::format("raise --max-hops (now {})", o.max_hops);
    case failover::remedy::raise_read_timeout:
      return fmt::format("raise --read-timeout-ms (now {})", o.read_timeout_ms);
  }
  return {};
}

nlohmann::json usage_json(const std::optional<failover::token_usage>& u) {
  if (!u) return nullptr;
  return {{"prompt", u->prompt}, {"completion", u->completion}, {"total", u->total}};
}

nlohmann::json to_json(const result_type& r, const scrubber& scrub, const std::string& advice) {
  using nlohmann::json;
  json j;
  j["served_by"] = r ? json(std::string(r.served_by())) : json(nullptr);
  // The model the provider says answered (an alias may resolve to a dated version), and what the
  // answer cost; null when the provider did not say.
  j["model"] = r && !r->model.empty() ? json(scrub(r->model)) : json(nullptr);
  j["usage"] = r ? usage_json(r->usage) : json(nullptr);
  j["fallback_used"] = r.fallback_used();
  j["policy_rerouted"] = r.trace().policy_rerouted();
  j["answer"] = r ? json(r->content) : json(nullptr);  // the answer as sent, never masked
  j["stop"] = std::string(failover::to_string(r.stop()));
  j["elapsed_ms"] = to_ms(r.trace().elapsed());
  json attempts = json::array();
  for (const auto& a : r.trace().attempts()) {
    json x;
    x["model"] = std::string(a.model);
    x["attempt"] = a.attempt;
    x["start_ms"] = to_ms(a.start);
    x["elapsed_ms"] = to_ms(a.elapsed);
    if (a.ok) {
      x["status"] = r->status;
      x["kind"] = "ok";
      x["code"] = nullptr;
      x["usage"] = usage_json(r->usage);
    } else {
      x["status"] = a.error().status ? json(*a.error().status) : json(nullptr);
      x["kind"] = std::string(failover::to_string(a.error().kind));
      x["code"] = a.error().code.empty() ? json(nullptr) : json(scrub(a.error().code));
      x["message"] = scrub(a.error().message);
      x["usage"] = usage_json(a.error().usage);  // what this failure was billed
    }
    x["server_wait_ms"] =
        a.error().retry_after ? json(to_ms(*a.error().retry_after)) : json(nullptr);
    x["wait_ms"] = to_ms(a.wait);
    x["wait_reason"] = std::string(failover::to_string(a.why_wait));
    x["gave_up"] = a.stop == failover::stop_reason::none
                       ? json(nullptr)
                       : json(std::string(failover::to_string(a.stop)));
    attempts.push_back(std::move(x));
  }
  j["attempts"] = std::move(attempts);
  if (r) {
    j["error"] = nullptr;
  } else {
    const failover::error& e = r.error();
    j["error"] = {{"kind", std::string(failover::to_string(e.kind))},
                  {"status", e.status ? json(*e.status) : json(nullptr)},
                  {"code", e.code.empty() ? json(nullptr) : json(scrub(e.code))},
                  {"model", e.model},
                  {"message", scrub(e.message)},
                  {"stop", std::string(failover::to_string(r.stop()))},
                  {"hint", advice.empty() ? json(nullptr) : json(advice)}};
  }
  return j;
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

int run_prompt(const chat::options& o, const chat::command_line& cl) {
  if (!cl.prompt) throw chat::usage_error("missing PROMPT (the text to send)");
  session s = build_session(o);
  for (const auto& n : s.notes) fmt::print(stderr, "{}\n", n);
  const result_type r = s.chain->run(*cl.prompt);
  if (cl.trace_json) {
    fmt::print("{}\n", dump(to_json(r, *s.masks, hint(r, s, o))));
  } else {
    print_lines(stderr, (*s.masks)(fmt::format("{}", r.trace())), "");
    if (r) {
      print_lines(stderr, summary(r, *s.masks), "");
      fmt::print("{}\n", r->content);
    }
  }
  std::fflush(stdout);
  if (!r) {
    const std::string remedy = hint(r, s, o);
    print_lines(
        stderr,
        "failover-chat: " + summary(r, *s.masks) + (remedy.empty() ? "" : "; hint: " + remedy), "");
    return 1;
  }
  return 0;
}

// The demo: a scripted provider on 127.0.0.1, called over real HTTP through the same code path
// as a real endpoint.
int run_demo(chat::options o, const chat::command_line& cl) {
  using failover::testing::mock_reply;
  failover::testing::mock_provider mock;
  mock.script("gpt-4o", {mock_reply::error(429, "rate_limit_exceeded",
                                           "Rate limit reached for gpt-4o", "requests")
                             .with_header("Retry-After", "1"),
                         mock_reply::error(503, "", "The server is overloaded"),
                         mock_reply::answer("Paris is the capital of France."),
                         mock_reply::error(503, "", "The server is overloaded"),
                         mock_reply::anthropic_error(529, "overloaded_error", "Overloaded")});
  mock.script("claude-sonnet", {mock_reply::answer("The capital of France is Paris.")});
  o.base_url = mock.base_url();
  o.models = {"gpt-4o", "claude-sonnet"};
  o.api_key_env.clear();  // the demo needs no key
  session s = build_session(o);

  struct step {
    const char* title;
    const char* prompt;
  };
  const step steps[] = {
      {"gpt-4o is rate limited (429, Retry-After: 1), then answers 503; the retry succeeds.",
       "What is the capital of France?"},
      {"gpt-4o stays down (503, then 529 overloaded) until its attempts run out; claude-sonnet\n   "
       "takes over.",
       "And the capital of France, once more?"},
  };
  if (!cl.trace_json) {
    fmt::print(
        "failover-chat demo: a mock OpenAI-compatible provider at {} (in process,\n"
        "no key, no network). Chain: gpt-4o, then claude-sonnet; {} attempts per model.\n",
        mock.base_url(), o.max_attempts);
  }
  bool all_ok = true;
  std::size_t seen = 0;
  int n = 0;
  for (const step& st : steps) {
    const result_type r = s.chain->run(st.prompt);
    all_ok = all_ok && static_cast<bool>(r);
    const auto log = mock.requests();
    if (cl.trace_json) {
      fmt::print("{}\n", dump(to_json(r, *s.masks, hint(r, s, o))));
      seen = log.size();
      continue;
    }
    fmt::print("\n{}. {}\n   prompt: \"{}\"\n   trace:\n", ++n, st.title, st.prompt);
    print_lines(stdout, fmt::format("{}", r.trace()), "     ");
    fmt::print("   the provider saw:\n");
    const auto first = seen < log.size() ? log[seen].received : failover::duration{};
    for (; seen < log.size(); ++seen) {
      const auto& q = log[seen];
      fmt::print("     +{:<8} POST {}  model {} -> {}{}\n",
                 failover::format_duration(q.received - first), q.path, q.model, q.status,
                 q.retry_after.empty() ? "" : " (Retry-After: " + q.retry_after + ")");
    }
    if (r) {
      fmt::print("   answer ({}): {}\n", summary(r, *s.masks), r->content);
    } else {
      const std::string remedy = hint(r, s, o);
      fmt::print("   {}{}\n", summary(r, *s.masks), remedy.empty() ? "" : "; hint: " + remedy);
    }
  }
  std::fflush(stdout);
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const chat::command_line cl = chat::read_command_line(argc, argv);
    if (cl.help) {
      fmt::print("{}", usage);
      return 0;
    }
    chat::options o;
    const bool demo = !cl.has("base-url") && !cl.config;
    if (demo) {
      for (const char* flag : {"model", "context-fallback", "policy-fallback"})
        if (cl.has(flag))
          throw chat::usage_error(std::string("--") + flag +
                                  " needs --base-url or --config (without them failover-chat "
                                  "runs its demo)");
      if (cl.prompt)
        throw chat::usage_error(
            "a PROMPT needs --base-url or --config (without them "
            "failover-chat runs its demo)");
      // Short waits so the demo takes about two seconds; every timing flag still applies.
      o.max_attempts = 3;
      o.base_delay_ms = 100;
      o.max_delay_ms = 1000;
      o.max_server_wait_ms = 10000;
      o.deadline_ms = 20000;
      o.connect_timeout_ms = 1000;
      o.read_timeout_ms = 5000;
    } else if (cl.config) {
      chat::apply_config(o, chat::read_config_file(*cl.config), *cl.config);
    }
    chat::apply_flags(o, cl);
    return demo ? run_demo(std::move(o), cl) : run_prompt(o, cl);
  } catch (const chat::usage_error& e) {
    fmt::print(stderr, "failover-chat: {}\n(failover-chat --help lists the flags)\n", e.what());
    return 2;
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "failover-chat: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "failover-chat: {}\n", e.what());
    return 1;
  }
}
