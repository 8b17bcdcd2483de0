# Warning flags for Vitruvian's own targets, carried by an INTERFACE target so that third-party
# code (and imported targets, whose headers are SYSTEM) is not affected.
add_library(vitruvian_warnings INTERFACE)
add_library(vitruvian::warnings ALIAS vitruvian_warnings)
target_compile_options(vitruvian_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wshadow=local>  # not clang's (tests/fuzz)
  $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor -Woverloaded-virtual>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${VITRUVIAN_WERROR}>>:-Werror>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)
