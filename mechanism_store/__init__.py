"""recur.mechanism_store: the safety gate (static policy, property tests) and the git store of mechanisms."""
