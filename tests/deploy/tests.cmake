# Deployment artefacts: the Helm chart (rendered by tools/helm-render, checked, and its router
# config accepted by vllm-router --check-config) and the container image's Dockerfile.
# Included from tests/CMakeLists.txt: include(deploy/tests.cmake)
if(NOT VLLM_ROUTER_PYTHON)
  find_program(VLLM_ROUTER_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  if(NOT VLLM_ROUTER_PYTHON)
    find_program(VLLM_ROUTER_PYTHON NAMES python3 REQUIRED)
  endif()
endif()

set(VLLM_ROUTER_HELM_RENDER ${CMAKE_CURRENT_BINARY_DIR}/deploy/helm-render)
# Test setup: build the renderer (Go, offline, Debian packages; cached in the build tree).
add_test(NAME deploy_helm_render_build
  COMMAND bash ${PROJECT_SOURCE_DIR}/tools/helm-render/build.sh ${VLLM_ROUTER_HELM_RENDER})
set_tests_properties(deploy_helm_render_build PROPERTIES
  FIXTURES_SETUP deploy_helm_render TIMEOUT 300)

if(TARGET vllm-router AND TARGET vllm-sim)
  add_test(NAME deploy_chart
    COMMAND ${VLLM_ROUTER_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_chart.py)
  set_tests_properties(deploy_chart PROPERTIES
    FIXTURES_REQUIRED deploy_helm_render
    ENVIRONMENT "HELM_RENDER=${VLLM_ROUTER_HELM_RENDER};VLLM_ROUTER=$<TARGET_FILE:vllm-router>;VLLM_SIM=$<TARGET_FILE:vllm-sim>"
    TIMEOUT 400)  # the first run installs tests/deploy/validate's pinned packages (npm ci)
  add_test(NAME deploy_docker
    COMMAND ${VLLM_ROUTER_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_docker.py)
  set_tests_properties(deploy_docker PROPERTIES
    ENVIRONMENT "VLLM_ROUTER=$<TARGET_FILE:vllm-router>;VLLM_SIM=$<TARGET_FILE:vllm-sim>;VLLM_ROUTER_BUILD_DIR=${PROJECT_BINARY_DIR}"
    TIMEOUT 120)
endif()
