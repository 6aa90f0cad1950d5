"""The engine: plan (analyses chosen, their needs and costs) -> capture (one hooked pass per batch that
records the union of the needs) -> passes an analysis asks for (patched forwards), run by an executor."""
