"""recur.levels: level 1 (the inner loop over a task) and the outer loop that searches for mechanisms."""
