"""Media bindings: port pools, latching rules and binding tables."""
