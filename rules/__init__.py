"""When it is wrong: rule schema, built-in packs and the evaluation engine."""
