"""Detection: presence baselines, rarity scoring, the 15-minute rule, backtests."""
