"""What a run is made of: the named choices, the tasks and their data, the profiles. Plain data without torch;
every layer above reads it."""
