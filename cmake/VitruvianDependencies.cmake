# Finds every dependency as an imported target. The CUDA side (NCCL backend, kernels) is built
# when VITRUVIAN_CUDA is ON, or AUTO and both nvcc and NCCL are found.

# nvcc and the CUDA architectures are chosen before LibTorch is looked for: a CUDA LibTorch's
# config enables the CUDA language itself and would otherwise settle both.
if(NOT VITRUVIAN_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    # "90": sm_90 code for H100/H200 plus compute_90 PTX that newer GPUs compile at load time.
    set(CMAKE_CUDA_ARCHITECTURES "90" CACHE STRING "CUDA architectures (H100/H200 and PTX by default; e.g. 80;90 adds A100)")
  endif()
endif()
include(VitruvianFindTorch)
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
if(VITRUVIAN_PARTS STREQUAL "all")
  find_package(HDF5 REQUIRED COMPONENTS C)
  find_package(CLI11 REQUIRED)
  find_package(Nifti REQUIRED)          # libnifti2-dev: NIfTI-1/-2 import and export (cmake/FindNifti.cmake)
  find_package(DCMTK REQUIRED CONFIG)   # libdcmtk-dev: DICOM series import (and test series)
  # Only the DCMTK modules that read and write DICOM files and decode compressed pixel data.
  set(VITRUVIAN_DCMTK_LIBS DCMTK::ofstd DCMTK::oflog DCMTK::dcmdata DCMTK::dcmimgle DCMTK::dcmimage DCMTK::dcmjpeg
      DCMTK::dcmjpls)
endif()

# oneDNN (libdnnl-dev), the library LibTorch's CPU convolutions run on (Debian's LibTorch links
# the same libdnnl.so.2): the plain U-Net's CPU inference engine (models/onednn_unet.cpp) and
# conv_layout_bench call it directly. Optional: without it inference runs on LibTorch's ops.
find_path(VITRUVIAN_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
find_library(VITRUVIAN_DNNL_LIBRARY dnnl)
set(VITRUVIAN_WITH_ONEDNN OFF)
if(VITRUVIAN_DNNL_INCLUDE_DIR AND VITRUVIAN_DNNL_LIBRARY)
  set(VITRUVIAN_WITH_ONEDNN ON)
  add_library(vitruvian_onednn INTERFACE)
  add_library(vitruvian::onednn ALIAS vitruvian_onednn)
  target_include_directories(vitruvian_onednn SYSTEM INTERFACE ${VITRUVIAN_DNNL_INCLUDE_DIR})
  target_link_libraries(vitruvian_onednn INTERFACE ${VITRUVIAN_DNNL_LIBRARY})
  target_compile_definitions(vitruvian_onednn INTERFACE VITRUVIAN_HAVE_ONEDNN)
else()
  message(STATUS "oneDNN headers (libdnnl-dev) not found: the CPU inference engine and conv_layout_bench are not built")
endif()

# LibTorch as one INTERFACE target carrying its required flags (ABI macro, include dirs).
add_library(vitruvian_torch INTERFACE)
add_library(vitruvian::torch ALIAS vitruvian_torch)
target_link_libraries(vitruvian_torch INTERFACE torch)
separate_arguments(_vitruvian_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(vitruvian_torch INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${_vitruvian_torch_flags}>)

# PyTorch's wheels put the fmt they were built with (fmt 12 in 2.11) in LibTorch's include folder,
# which then shadows the fmt that spdlog and this project link (a system /usr/include comes last).
# A folder of links to the linked fmt's and spdlog's headers then goes before LibTorch's.
function(vitruvian_include_dir target out)
  get_target_property(_inc ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(NOT _inc)
    set(_inc /usr/include)  # a target without include folders: its headers are the system's
  endif()
  list(GET _inc 0 _inc)
  set(${out} "${_inc}" PARENT_SCOPE)
endfunction()
vitruvian_include_dir(fmt::fmt _fmt_include)
foreach(_dir IN LISTS TORCH_INCLUDE_DIRS)
  if(EXISTS "${_dir}/fmt/core.h" AND NOT _dir STREQUAL _fmt_include)
    set(_shim "${PROJECT_BINARY_DIR}/generated/fmt_before_torch")
    vitruvian_include_dir(spdlog::spdlog _spdlog_include)
    file(MAKE_DIRECTORY "${_shim}")
    file(CREATE_LINK "${_fmt_include}/fmt" "${_shim}/fmt" SYMBOLIC)
    file(CREATE_LINK "${_spdlog_include}/spdlog" "${_shim}/spdlog" SYMBOLIC)
    target_include_directories(vitruvian_torch SYSTEM BEFORE INTERFACE "${_shim}")
    message(STATUS "LibTorch carries its own fmt (${_dir}/fmt): the linked fmt ${fmt_VERSION} and spdlog go first")
    break()
  endif()
endforeach()

# Only the MPI C API is used; keep the deprecated C++ bindings out of every translation unit.
target_compile_definitions(MPI::MPI_CXX INTERFACE OMPI_SKIP_MPICXX MPICH_SKIP_MPICXX)

# A LibTorch built with CUDA provides torch_cuda / c10_cuda; the NCCL backend then orders its
# stream after LibTorch's current stream instead of the CUDA default stream.
set(VITRUVIAN_TORCH_CUDA OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(VITRUVIAN_TORCH_CUDA ON)
endif()

set(VITRUVIAN_WITH_CUDA OFF)
if(NOT VITRUVIAN_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  find_package(CUDAToolkit QUIET)
  if(CMAKE_CUDA_COMPILER AND CUDAToolkit_FOUND)
    find_package(NCCL QUIET)
  endif()
  if(CMAKE_CUDA_COMPILER AND CUDAToolkit_FOUND AND NCCL_FOUND)
    enable_language(CUDA)
    set(VITRUVIAN_WITH_CUDA ON)
    message(STATUS "CUDA side on: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, NCCL ${NCCL_VERSION}, "
                   "architectures ${CMAKE_CUDA_ARCHITECTURES}")
  elseif(VITRUVIAN_CUDA STREQUAL "ON")
    message(FATAL_ERROR "VITRUVIAN_CUDA=ON but the CUDA side cannot be built: nvcc "
                        "'${CMAKE_CUDA_COMPILER}', CUDA toolkit found '${CUDAToolkit_FOUND}', NCCL found "
                        "'${NCCL_FOUND}' (set NCCL_HOME or CUDACXX)")
  else()
    message(STATUS "CUDA side off: nvcc '${CMAKE_CUDA_COMPILER}', NCCL found '${NCCL_FOUND}'")
  endif()
endif()

# Common settings for every Vitruvian library and program.
function(vitruvian_target_defaults target)
  target_link_libraries(${target} PRIVATE vitruvian::warnings vitruvian::sanitizers)
endfunction()
