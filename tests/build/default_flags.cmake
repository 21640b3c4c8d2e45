# A checkout configured as a new user would (no preset, no option) keeps failover's warnings on
# but does not make them errors: a warning another compiler or flag set finds must not stop a
# first build. The gates turn -Werror on (FAILOVER_WERROR=ON in CMakePresets.json and scripts/).
#   cmake -DSOURCE_DIR=... -DWORK_DIR=... -DGENERATOR=... -DCXX=... -P default_flags.cmake
file(REMOVE_RECURSE "${WORK_DIR}")
execute_process(
  COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}" -G "${GENERATOR}"
          -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
          -DFAILOVER_BUILD_BENCH=OFF -DFAILOVER_BUILD_TESTS=OFF
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "configuring a default build failed:\n${out}")
endif()
file(READ "${WORK_DIR}/compile_commands.json" commands)
if(NOT commands MATCHES "-Wall -Wextra")
  message(FATAL_ERROR "a default build lost failover's warnings:\n${commands}")
endif()
if(commands MATCHES "-Werror")
  message(FATAL_ERROR "a default build makes warnings errors (FAILOVER_WERROR must be opt-in)")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
message(STATUS "a default build: warnings on, not errors")
