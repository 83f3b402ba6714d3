"""The CPU demo: recorded rollouts scored through verl's reward loop and SpeciaRL's group stage."""
