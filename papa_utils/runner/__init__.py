"""The run machinery: the steps and their cache keys, the sweeps, where each cell runs (executor), the runner that
executes the notebooks (pipeline) and `make verify`."""
