# What every consumer checks about the target it was given: it adds no compiler flags to the
# user's build, and a subproject builds nothing of failover's but the target.
get_target_property(failover_options failover::failover INTERFACE_COMPILE_OPTIONS)
if(failover_options)
  message(FATAL_ERROR "failover::failover must add no compile options, but adds: ${failover_options}")
endif()
foreach(own_target failover_tests failover_minimal failover_demo failover_header_check)
  if(TARGET ${own_target})
    message(FATAL_ERROR "as a dependency, failover must not build its own target ${own_target}")
  endif()
endforeach()
