"""The `modelops` command line, and `modelops dev`: the operator's spec, the builder's build."""
