"""recur.meta_meta: what makes the outer loop search itself — recursive bootstrapping (porting mechanisms an
outer level found for the level below it up to that outer level) and the meta-level prompts."""
