# Finds the optional libraries of failover's HTTP adapters, for failover-chat and the integration
# tests. Each library found becomes a global target (test with if(TARGET ...)):
#   failover_dep_httplib   cpp-httplib: its CMake package, else pkg-config (Debian builds it as a
#                          shared library whose compile definitions must match), else the header
#   failover_dep_json      nlohmann-json
#   failover_dep_curl      libcurl
#   failover_dep_asio      standalone Asio (header-only; Debian: libasio-dev)
include_guard(GLOBAL)

# Targets found here are made global so that every directory can link them.
function(failover_global_dep name found)
  get_target_property(imported ${found} IMPORTED)
  get_target_property(global ${found} IMPORTED_GLOBAL)
  if(imported AND NOT global)
    set_target_properties(${found} PROPERTIES IMPORTED_GLOBAL TRUE)
  endif()
  add_library(${name} INTERFACE IMPORTED GLOBAL)
  target_link_libraries(${name} INTERFACE ${found} ${ARGN})
endfunction()

find_package(httplib CONFIG QUIET)
if(TARGET httplib::httplib)
  failover_global_dep(failover_dep_httplib httplib::httplib)
else()
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(failover_pc_httplib QUIET IMPORTED_TARGET GLOBAL cpp-httplib)
  endif()
  if(TARGET PkgConfig::failover_pc_httplib)
    failover_global_dep(failover_dep_httplib PkgConfig::failover_pc_httplib Threads::Threads)
  else()
    # The single header with its implementation inline, as upstream ships it.
    find_path(failover_httplib_dir httplib.h)
    if(failover_httplib_dir)
      file(STRINGS "${failover_httplib_dir}/httplib.h" failover_httplib_inline
           REGEX "^inline bool Server::listen_after_bind" LIMIT_COUNT 1)
      if(failover_httplib_inline)
        add_library(failover_dep_httplib INTERFACE IMPORTED GLOBAL)
        target_include_directories(failover_dep_httplib INTERFACE "${failover_httplib_dir}")
        target_link_libraries(failover_dep_httplib INTERFACE Threads::Threads)
      endif()
    endif()
  endif()
endif()

find_package(nlohmann_json 3 QUIET)
if(TARGET nlohmann_json::nlohmann_json)
  failover_global_dep(failover_dep_json nlohmann_json::nlohmann_json)
endif()

find_package(CURL QUIET)
if(TARGET CURL::libcurl)
  failover_global_dep(failover_dep_curl CURL::libcurl)
endif()

# Standalone Asio, not Boost's: <asio.hpp>, used without Boost.
if(NOT TARGET failover_dep_asio)
  find_path(failover_asio_dir asio.hpp)
  if(failover_asio_dir)
    add_library(failover_dep_asio INTERFACE IMPORTED GLOBAL)
    target_include_directories(failover_dep_asio INTERFACE "${failover_asio_dir}")
    target_compile_definitions(failover_dep_asio INTERFACE ASIO_STANDALONE)
    target_link_libraries(failover_dep_asio INTERFACE Threads::Threads)
  endif()
endif()
