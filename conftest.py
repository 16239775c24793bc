# Shared by the unit tests (tests/) and nbval (notebooks/): notebooks execute in notebooks/, so a relative
# PAPA_DATA_DIR given on the command line is made absolute before anything runs.
from papa_utils.runs import absolute_data_dir

absolute_data_dir()
