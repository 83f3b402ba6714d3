"""CPU debugging of verl recipes: a CPU rollout backend and a tiny policy that gives the reward something to do."""
