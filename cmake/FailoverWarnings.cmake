# Strict warnings (and, when asked, sanitizers) for failover's own targets only; users of the
# INTERFACE target get none of them.
set(FAILOVER_SANITIZE "" CACHE STRING
    "Sanitizers for failover's own targets: address,undefined or thread (empty: none)")
# ThreadSanitizer's runtime defines the global operator new itself, so a target that replaces it
# (to count allocations) cannot link in a TSan build; such targets start no thread anyway.
if(FAILOVER_SANITIZE MATCHES "thread")
  set(FAILOVER_CAN_REPLACE_NEW OFF)
else()
  set(FAILOVER_CAN_REPLACE_NEW ON)
endif()

function(failover_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 $<$<BOOL:${FAILOVER_WERROR}>:/WX>)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                           $<$<BOOL:${FAILOVER_WERROR}>:-Werror>)
  endif()
  if(FAILOVER_SANITIZE)
    # No recovery: a sanitizer report fails the test that caused it.
    target_compile_options(${target} PRIVATE -fsanitize=${FAILOVER_SANITIZE}
                           -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=${FAILOVER_SANITIZE})
  endif()
endfunction()
