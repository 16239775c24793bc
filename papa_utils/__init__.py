"""papa_utils: replace a frozen Transformer's attention heads with constant (average) matrices and measure
what that costs (Hassid et al., "How Much Does Attention Actually Attend?", Findings of EMNLP 2022).

The names below load their module on first use, so that a module without torch (``profiles``, ``publish``,
``analysis``) is imported without loading torch."""
from importlib import import_module

_EXPORTS = {
    "AttentionAverages": "averages", "AveragesMismatchError": "averages", "compute_average_attention": "averages",
    "Encoded": "layout", "encode": "layout",
    "OFFLINE_MODELS": "models", "ModelNotAvailableError": "models", "describe": "models", "load_model": "models",
    "UnsupportedModelError": "replace", "mix_heads": "replace", "replace_heads": "replace", "patch_attention": "replace",
    "record_attention": "replace", "hook_names": "replace",
    "TASKS": "tasks", "DataError": "tasks", "Task": "tasks", "TaskSplit": "tasks", "get_task": "tasks",
    "load_task": "tasks",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'papa_utils' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
