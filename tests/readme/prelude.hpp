// What every README block sees: the library, and declarations of the application's own code
// that the examples call (never defined: the blocks are compiled, not linked).
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <fmt/core.h>
#include <failover/failover.hpp>
#ifdef FAILOVER_README_ADAPTERS
#include <failover/adapters/httplib.hpp>
#include <failover/adapters/openai.hpp>
#endif

using namespace std::chrono_literals;

// A call to OpenAI's API: the answer, or a failover::failure built from what the client saw.
failover::outcome<std::string> call_openai(const std::string& model, const std::string& prompt,
                                           failover::duration timeout);
// Calls to one model each, answering or throwing.
std::string call_gpt4o(const std::string& prompt);
std::string call_anthropic(const std::string& prompt);
std::string call_long_context(const std::string& prompt);
