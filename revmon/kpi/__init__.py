"""Pure revenue metric math: no framework imports, unit-tested in milliseconds."""
