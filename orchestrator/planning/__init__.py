"""Planning: desired state (SPEC 3), the pure diff against actual state, Plan values and JSON."""
