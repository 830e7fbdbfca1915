# Header-only and test dependencies come from Debian's packages (scripts/setup.sh installs them).
# The GPU machine has no package registry: there scripts/make_deps.sh's copy in .deps/ (carried
# with the working tree) stands in, with the same target names.
set(LONGATTN_DEPS_DIR ${PROJECT_SOURCE_DIR}/.deps CACHE PATH "Carried dependencies")

find_package(Threads REQUIRED)
find_package(fmt QUIET)
find_package(nlohmann_json 3.10 QUIET)
find_package(CLI11 QUIET)

if(NOT TARGET fmt::fmt-header-only)
  if(NOT EXISTS ${LONGATTN_DEPS_DIR}/include/fmt/core.h)
    message(FATAL_ERROR "fmt not found: run scripts/setup.sh (or scripts/make_deps.sh for .deps)")
  endif()
  add_library(fmt::fmt-header-only INTERFACE IMPORTED)
  target_include_directories(fmt::fmt-header-only INTERFACE ${LONGATTN_DEPS_DIR}/include)
  target_compile_definitions(fmt::fmt-header-only INTERFACE FMT_HEADER_ONLY=1)
endif()
if(NOT TARGET nlohmann_json::nlohmann_json)
  if(NOT EXISTS ${LONGATTN_DEPS_DIR}/include/nlohmann/json.hpp)
    message(FATAL_ERROR "nlohmann_json not found: run scripts/setup.sh")
  endif()
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  target_include_directories(nlohmann_json::nlohmann_json INTERFACE ${LONGATTN_DEPS_DIR}/include)
endif()
if(NOT TARGET CLI11::CLI11)
  if(NOT EXISTS ${LONGATTN_DEPS_DIR}/include/CLI/CLI.hpp)
    message(FATAL_ERROR "CLI11 not found: run scripts/setup.sh")
  endif()
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${LONGATTN_DEPS_DIR}/include)
endif()

# GoogleTest: the installed package, else Debian's source copy carried in .deps/googletest.
macro(longattn_find_gtest)
  find_package(GTest QUIET)
  if(NOT TARGET GTest::gtest_main)
    if(NOT EXISTS ${LONGATTN_DEPS_DIR}/googletest/CMakeLists.txt)
      message(FATAL_ERROR "GoogleTest not found: run scripts/setup.sh")
    endif()
    set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
    set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
    add_subdirectory(${LONGATTN_DEPS_DIR}/googletest ${CMAKE_BINARY_DIR}/_deps/googletest
                     EXCLUDE_FROM_ALL)
    add_library(GTest::gtest ALIAS gtest)
    add_library(GTest::gtest_main ALIAS gtest_main)
  endif()
endmacro()

# cuDNN frontend headers (PyPI nvidia-cudnn-frontend): located by scripts/setup.sh, or in .deps.
find_path(LONGATTN_CUDNN_FRONTEND_INCLUDE cudnn_frontend.h
          HINTS ${LONGATTN_DEPS_DIR}/cudnn_frontend/include ENV CUDNN_FRONTEND_INCLUDE)

# CUTLASS / CuTe headers (PyPI nvidia-cutlass's cutlass_library/source/include), for the sm_90a
# flash_hopper backend only: located in .deps (scripts/make_deps.sh) or by CUTLASS_INCLUDE.
find_path(LONGATTN_CUTLASS_INCLUDE cute/tensor.hpp
          HINTS ${LONGATTN_DEPS_DIR}/cutlass/include ENV CUTLASS_INCLUDE)
