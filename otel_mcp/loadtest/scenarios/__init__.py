"""Named load scenarios; each module documents its scenarios in its docstring."""
