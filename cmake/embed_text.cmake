# Writes a C++ header holding a text file as a raw string literal (cmake -P, at build time):
#   cmake -DINPUT=file.html -DOUTPUT=file_html.h -DNAME=kName -P embed_text.cmake
# The file stays an ordinary editable file in the tree; the header is rebuilt when it changes.
file(READ "${INPUT}" text)
set(delimiter "vr_embed")
string(FIND "${text}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw string delimiter )${delimiter}\"")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_text.cmake: edit that file, not this one.\n"
  "#pragma once\n#include <string_view>\n"
  "inline constexpr std::string_view ${NAME} = R\"${delimiter}(${text})${delimiter}\";\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
