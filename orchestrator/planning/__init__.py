"""Planning: desired state (docs/planning.md, "Desired state"), the pure diff against actual state,
Plan values and JSON."""
