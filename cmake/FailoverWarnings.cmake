# Strict warnings for failover's own targets only; users of the INTERFACE target get none of them.
function(failover_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 $<$<BOOL:${FAILOVER_WERROR}>:/WX>)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                           $<$<BOOL:${FAILOVER_WERROR}>:-Werror>)
  endif()
endfunction()
