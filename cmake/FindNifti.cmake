# Finds the NIfTI C library (libnifti2-dev: nifti2_io + znz) and defines Nifti::nifti2.
# Debian's own NIFTIConfig.cmake points at files that the package does not install (/usr/lib
# instead of the multiarch folder, tools not shipped), so it cannot be used as it is.
find_path(NIFTI_INCLUDE_DIR nifti2_io.h HINTS ENV NIFTI_HOME PATH_SUFFIXES nifti include/nifti)
find_library(NIFTI_NIFTI2_LIBRARY nifti2 HINTS ENV NIFTI_HOME PATH_SUFFIXES lib)
find_library(NIFTI_ZNZ_LIBRARY znz HINTS ENV NIFTI_HOME PATH_SUFFIXES lib)
find_package(ZLIB)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Nifti REQUIRED_VARS NIFTI_NIFTI2_LIBRARY NIFTI_ZNZ_LIBRARY NIFTI_INCLUDE_DIR)

if(Nifti_FOUND AND NOT TARGET Nifti::nifti2)
  add_library(Nifti::znz UNKNOWN IMPORTED)
  set_target_properties(Nifti::znz PROPERTIES IMPORTED_LOCATION "${NIFTI_ZNZ_LIBRARY}")
  if(ZLIB_FOUND)
    set_property(TARGET Nifti::znz PROPERTY INTERFACE_LINK_LIBRARIES ZLIB::ZLIB)
  endif()
  add_library(Nifti::nifti2 UNKNOWN IMPORTED)
  set_target_properties(Nifti::nifti2 PROPERTIES
    IMPORTED_LOCATION "${NIFTI_NIFTI2_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${NIFTI_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "Nifti::znz;m")
endif()
mark_as_advanced(NIFTI_INCLUDE_DIR NIFTI_NIFTI2_LIBRARY NIFTI_ZNZ_LIBRARY)
