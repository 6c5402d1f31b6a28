"""The numerical core: Butcher tableaus and their order conditions (`schemes`, `order_conditions`), the stage
plan a tableau implies, and the blocks that step with them: `RKBlock` for every explicit scheme and the fused
recurrent scan (`fused_rnn`, with its C++ loop). It imports nothing else of odenets but `errors`."""
