# VITRUVIAN_SANITIZE="address;undefined" (or "thread") adds -fsanitize flags to Vitruvian targets.
add_library(vitruvian_sanitizers INTERFACE)
add_library(vitruvian::sanitizers ALIAS vitruvian_sanitizers)
if(VITRUVIAN_SANITIZE)
  list(JOIN VITRUVIAN_SANITIZE "," _vitruvian_san)
  if("thread" IN_LIST VITRUVIAN_SANITIZE AND "address" IN_LIST VITRUVIAN_SANITIZE)
    message(FATAL_ERROR "VITRUVIAN_SANITIZE: 'thread' cannot be combined with 'address'")
  endif()
  target_compile_options(vitruvian_sanitizers INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${_vitruvian_san} -fno-omit-frame-pointer>)
  target_link_options(vitruvian_sanitizers INTERFACE -fsanitize=${_vitruvian_san})
endif()
