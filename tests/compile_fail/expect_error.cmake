# Builds a target that must not compile (cmake -P). Passes when the build fails, its output
# matches EXPECT (the intended static_assert message), and, when MAX_ERRORS is set, it has at most
# that many "error:" lines: the message must come first and alone, not buried under errors from
# later uses of what it rejects.
#   cmake -DBUILD_DIR=... -DTARGET=... -DEXPECT=regex [-DMAX_ERRORS=n] -P expect_error.cmake
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET}
                RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(status EQUAL 0)
  message(FATAL_ERROR "${TARGET} compiled, but it must not")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "${TARGET} failed without the expected message `${EXPECT}`:\n${out}")
endif()
if(MAX_ERRORS)
  string(REPLACE ";" "," flat "${out}")  # a compiler line may hold ';', a list separator
  string(REGEX MATCHALL "[^\n]*error:[^\n]*" errors "${flat}")
  list(LENGTH errors count)
  if(count GREATER MAX_ERRORS)
    message(FATAL_ERROR "${TARGET}: ${count} error lines (at most ${MAX_ERRORS}):\n${out}")
  endif()
  message(STATUS "${TARGET}: the expected message, in ${count} error line(s)")
endif()
