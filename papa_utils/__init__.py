"""papa_utils: replace a frozen Transformer's attention heads with constant (average) matrices and measure
what that costs (Hassid et al., "How Much Does Attention Actually Attend?", Findings of EMNLP 2022)."""
from .averages import AttentionAverages, AveragesMismatchError, compute_average_attention
from .layout import Encoded, encode
from .models import OFFLINE_MODELS, ModelNotAvailableError, describe, load_model
from .replace import UnsupportedModelError, mix_heads, replace_heads
from .tasks import TASKS, DataError, Task, TaskSplit, get_task, load_task

__all__ = [
    "AttentionAverages", "AveragesMismatchError", "compute_average_attention", "Encoded", "encode",
    "OFFLINE_MODELS", "ModelNotAvailableError", "describe", "load_model", "UnsupportedModelError", "mix_heads",
    "replace_heads", "TASKS", "DataError", "Task", "TaskSplit", "get_task", "load_task",
]
