# Separate compilation takes the failure path out of a unit that wraps a call: every FAILOVER_DECL
# function the front door reaches is defined (T or W) in the header-only object and in none of the
# separate one, where it is only referenced (U).
#   cmake -DNM=... -DINLINE_OBJECT=... -DSEPARATE_OBJECT=... -P check_symbols.cmake
set(functions
    "failover::detail::redact" "failover::classifier::classify" "failover::classifier::verdict"
    "failover::server_wait" "failover::jittered_delay" "failover::backoff_options::validate"
    "failover::detail::name_list::intern_now" "failover::attempt_record::set_error"
    "failover::cancel_token::wait_for" "failover::detail::join" "failover::detail::machine_error"
    "failover::detail::stop_error" "failover::detail::all_open_error"
    "failover::detail::unnamed_error")
foreach(which INLINE SEPARATE)
  execute_process(COMMAND ${NM} -C ${${which}_OBJECT} OUTPUT_VARIABLE symbols_${which}
                  RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${NM} failed on ${${which}_OBJECT}")
  endif()
endforeach()
set(defined_inline 0)
set(referenced 0)
foreach(f IN LISTS functions)
  if(symbols_INLINE MATCHES "\n[0-9a-f]* *[TtWw] ${f}(\\[[^]]*\\])?\\(")
    math(EXPR defined_inline "${defined_inline} + 1")
  endif()
  if(symbols_SEPARATE MATCHES "\n[0-9a-f]* *[TtWw] ${f}(\\[[^]]*\\])?\\(")
    message(FATAL_ERROR "${f} is compiled into the unit under separate compilation")
  endif()
  if(symbols_SEPARATE MATCHES "\n *U ${f}(\\[[^]]*\\])?\\(")
    math(EXPR referenced "${referenced} + 1")
  endif()
endforeach()
# The control: the patterns find the header-only unit's copies, and the separate unit calls out.
if(defined_inline LESS 8 OR referenced LESS 8)
  message(FATAL_ERROR "expected the failure path defined in the header-only unit and referenced "
                      "by the separate one: ${defined_inline} defined, ${referenced} referenced")
endif()
message(STATUS "${defined_inline} failure-path functions defined header-only, "
               "${referenced} referenced and none defined under separate compilation")
