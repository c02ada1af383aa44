"""Developer tools: the one-command local stack (`make run`) and the scripted demo (`make demo`)."""
