"""The shifts suite: supervised task sequences that isolate the mechanisms of plasticity loss."""
