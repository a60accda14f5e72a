# The CUDA backend (cuda-backend/), included by the top-level CMakeLists.txt when MOLE_CUDA is AUTO or ON.
# Finds nvcc on the PATH, through $CUDACXX or under /usr/local/cuda, checks that it can build, and makes the static
# library mole_cuda, linked into mole_backends with the definition MOLE_HAVE_CUDA. The CUDA runtime is linked
# statically (CUDA::cudart_static): the binaries need no libcudart, and libcuda (the driver) is opened at run time by
# the runtime itself, so mole starts where there is no NVIDIA driver.

# Machine code for Ampere (sm_80, sm_86), Ada (sm_89) and Hopper (sm_90), and PTX of sm_90 that the driver compiles
# for newer GPUs. sm_80 and up: the prefill kernel uses TF32 tensor cores (WMMA).
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "80-real;86-real;89-real;90-real;90-virtual")
endif()

if(NOT CMAKE_CUDA_COMPILER)
  find_program(MOLE_NVCC nvcc HINTS ENV CUDACXX PATHS /usr/local/cuda/bin NO_CACHE)
  if(MOLE_NVCC)
    set(ENV{CUDACXX} ${MOLE_NVCC})  # check_language() below tries this one
  endif()
endif()
include(CheckLanguage)
check_language(CUDA)

if(NOT CMAKE_CUDA_COMPILER)
  if(MOLE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MOLE_CUDA=ON, but no working CUDA compiler was found (nvcc on the PATH, $CUDACXX or "
                        "/usr/local/cuda/bin/nvcc). Install the CUDA toolkit (12.0 or newer, e.g. NVIDIA's cuda-toolkit "
                        "package) or configure with -DMOLE_CUDA=AUTO or OFF.")
  endif()
  message(STATUS "mole: no CUDA toolkit (nvcc) found: building without the CUDA backend "
                 "(install the CUDA toolkit to /usr/local/cuda, or put nvcc on the PATH, to build it)")
  return()
endif()

set(CMAKE_CUDA_RUNTIME_LIBRARY Static)
enable_language(CUDA)
if(CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 12.0)  # the CUDA 12 runtime API (graphs, events), and sm_90
  set(mole_cuda_old "nvcc ${CMAKE_CUDA_COMPILER_VERSION} (${CMAKE_CUDA_COMPILER}) is older than CUDA 12.0, which the "
                    "CUDA backend needs")
  if(MOLE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MOLE_CUDA=ON, but ${mole_cuda_old}: install CUDA 12.0 or newer")
  endif()
  message(STATUS "mole: ${mole_cuda_old}: building without the CUDA backend")
  return()
endif()
find_package(CUDAToolkit REQUIRED)

file(GLOB MOLE_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cuda-backend/*.cu
     ${CMAKE_SOURCE_DIR}/cuda-backend/*.cpp)
add_library(mole_cuda STATIC ${MOLE_CUDA_SOURCES})
target_link_libraries(mole_cuda PUBLIC mole_model PRIVATE CUDA::cudart_static)
# The .cu files are C++17 (CMake 3.25, Debian 12's, knows no C++20 flag for nvcc; without this the target would ask
# for CUDA20 after CMAKE_CXX_STANDARD); the .cpp files are C++20 as the rest of mole. -lineinfo: compute-sanitizer and
# profilers name source lines; it changes no code.
set_target_properties(mole_cuda PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON CUDA_EXTENSIONS OFF)
target_compile_options(mole_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
target_link_libraries(mole_backends PUBLIC mole_cuda)
target_compile_definitions(mole_backends PUBLIC MOLE_HAVE_CUDA)
message(STATUS "mole: building the CUDA backend with nvcc ${CMAKE_CUDA_COMPILER_VERSION} "
               "(${CMAKE_CUDA_COMPILER}), architectures ${CMAKE_CUDA_ARCHITECTURES}")
