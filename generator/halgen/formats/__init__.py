"""One small line-keeping parser per config format a generated repo holds.

Each returns what it understood plus (line, message) for what it did not, so a
caller can report a problem and still look at the rest. Knows nothing of stacks."""
