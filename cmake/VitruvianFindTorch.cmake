# find_package(Torch) for the system LibTorch (Debian's CPU build in /usr) or one given with
# Torch_DIR, e.g. a CUDA LibTorch unpacked under a build tree (launch/gpu_build_check.sh), and
# the few places where a CUDA LibTorch's config does not suit this project:
#  - TorchConfig finds its Caffe2 config and its libraries with PATHS, which CMake searches after
#    the system prefixes: with a LibTorch in /usr as well, that one's would be mixed in. The
#    prefix next to Torch_DIR is searched first.
#  - Caffe2's cuda.cmake sets CMAKE_CUDA_ARCHITECTURES to OFF and appends -gencode flags of its
#    own (TORCH_CUDA_ARCH_LIST, else the GPUs it detects, else a list of old ones) to
#    CMAKE_CUDA_FLAGS: the project's kernels keep CMAKE_CUDA_ARCHITECTURES and their flags.
#  - It links torch_cuda with CUDA::nvToolsExt, a library that CUDA 12.9 deprecated and CUDA 13
#    no longer ships; LibTorch uses the header-only NVTX 3 (CUDA::nvtx3) instead since 2.6.
if(Torch_DIR AND EXISTS "${Torch_DIR}/../Caffe2/Caffe2Config.cmake" AND NOT Caffe2_DIR)
  get_filename_component(Caffe2_DIR "${Torch_DIR}/../Caffe2" ABSOLUTE)
  set(Caffe2_DIR "${Caffe2_DIR}" CACHE PATH "Caffe2 config of the LibTorch in Torch_DIR")
endif()
set(_vitruvian_saved_library_path "${CMAKE_LIBRARY_PATH}")
if(Torch_DIR)
  get_filename_component(_vitruvian_torch_libdir "${Torch_DIR}/../.." ABSOLUTE)
  list(PREPEND CMAKE_LIBRARY_PATH "${_vitruvian_torch_libdir}")
endif()
set(_vitruvian_saved_module_path "${CMAKE_MODULE_PATH}")
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST}
   AND CMAKE_CUDA_ARCHITECTURES MATCHES "^[0-9]")
  # "90" -> "9.0", "80;90" -> "8.0;9.0": no GPU detection run at configure time.
  string(REGEX REPLACE "([0-9]+)([0-9])(-real|-virtual)?" "\\1.\\2" TORCH_CUDA_ARCH_LIST "${CMAKE_CUDA_ARCHITECTURES}")
endif()

find_package(Torch REQUIRED)

set(CMAKE_LIBRARY_PATH "${_vitruvian_saved_library_path}")
set(CMAKE_MODULE_PATH "${_vitruvian_saved_module_path}")
# The normal variables cuda.cmake sets; the cache entries (the project's and the user's) stay.
unset(CMAKE_CUDA_ARCHITECTURES)
unset(CMAKE_CUDA_FLAGS)
if(TARGET torch::nvtoolsext AND NOT TARGET CUDA::nvToolsExt)
  if(TARGET CUDA::nvtx3)
    set_property(TARGET torch::nvtoolsext PROPERTY INTERFACE_LINK_LIBRARIES CUDA::nvtx3)
  else()
    set_property(TARGET torch::nvtoolsext PROPERTY INTERFACE_LINK_LIBRARIES "")
  endif()
endif()
