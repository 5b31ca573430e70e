// Tests for ModelCatalog resolution.
#include <doctest/doctest.h>

#include "vllm_router/model_catalog.h"

using namespace vllm_router;

TEST_CASE("catalog resolves names, aliases and LoRA adapters") {
  ModelCatalog c;
  CHECK(c.add("base", NameKind::model, 0, "base"));
  CHECK(c.add("short", NameKind::alias, 0, "base"));
  CHECK(c.add("sql-lora", NameKind::lora, 0, "sql-lora"));
  CHECK(c.add("other", NameKind::model, 1, "other"));
  CHECK_FALSE(c.add("short", NameKind::alias, 1, "other"));

  Resolution r;
  REQUIRE(c.resolve("short", r));
  CHECK(r.pool == 0);
  CHECK(r.upstream == "base");
  CHECK(r.rewrite);
  REQUIRE(c.resolve("sql-lora", r));
  CHECK(r.upstream == "sql-lora");
  CHECK_FALSE(r.rewrite);
  REQUIRE(c.resolve("other", r));
  CHECK(r.pool == 1);
  CHECK_FALSE(c.resolve("Base", r));  // exact, case-sensitive like vLLM
  CHECK(c.entries().size() == 4);
}

TEST_CASE("catalog default model") {
  ModelCatalog c;
  c.add("a", NameKind::model, 0, "a");
  Resolution r;
  CHECK_FALSE(c.resolve_default(r));
  CHECK_FALSE(c.set_default("missing"));
  CHECK(c.set_default("a"));
  REQUIRE(c.resolve_default(r));
  CHECK(r.upstream == "a");
}
