"""The rule language, its loader with located diagnostics, and the pure engine."""
