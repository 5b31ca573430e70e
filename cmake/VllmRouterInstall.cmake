# Install rules: headers, library, CMake package (config + version) and pkg-config file.
include(CMakePackageConfigHelpers)

install(TARGETS vllm_router EXPORT vllm_routerTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/vllm_router DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(VLLM_ROUTER_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/vllm_router)
install(EXPORT vllm_routerTargets NAMESPACE vllm_router:: DESTINATION ${VLLM_ROUTER_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/vllm_routerConfig.cmake.in
  ${PROJECT_BINARY_DIR}/vllm_routerConfig.cmake INSTALL_DESTINATION ${VLLM_ROUTER_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/vllm_routerConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/vllm_routerConfig.cmake
  ${PROJECT_BINARY_DIR}/vllm_routerConfigVersion.cmake DESTINATION ${VLLM_ROUTER_CMAKE_DIR})

# The shared library carries its private dependencies itself: the .pc file names none (a
# Requires.private line would add their compile flags, e.g. cpp-httplib's -D options, to every
# consumer's --cflags). A static library lists them as link flags only. The run path lets a
# consumer built with `pkg-config --libs` start without LD_LIBRARY_PATH, wherever the prefix is.
if(BUILD_SHARED_LIBS)
  set(VLLM_ROUTER_PC_CFLAGS "")
  set(VLLM_ROUTER_PC_LIBS_PRIVATE "")
  set(VLLM_ROUTER_PC_RPATH "-Wl,-rpath,\${libdir}")
else()
  set(VLLM_ROUTER_PC_CFLAGS "-DVLLM_ROUTER_STATIC")
  set(VLLM_ROUTER_PC_LIBS_PRIVATE "-lsimdjson -lcpp-httplib -lcares -lssl -lcrypto")
  set(VLLM_ROUTER_PC_RPATH "")
endif()
# Relocatable: the prefix is found from the .pc file's own location.
file(RELATIVE_PATH VLLM_ROUTER_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" VLLM_ROUTER_PC_TO_PREFIX "${VLLM_ROUTER_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/vllm_router.pc.in ${PROJECT_BINARY_DIR}/vllm_router.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/vllm_router.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

if(TARGET vllm-router)
  install(TARGETS vllm-router RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
if(TARGET vllm-sim)
  install(TARGETS vllm-sim RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
