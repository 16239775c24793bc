"""papa_utils: replace a frozen Transformer's attention heads with constant (average) matrices and measure
what that costs (Hassid et al., "How Much Does Attention Actually Attend?", Findings of EMNLP 2022).

The names below load their module on first use, so that a module without torch (``settings``, ``records``,
``reports``) is imported without loading torch."""
from importlib import import_module

_EXPORTS = {
    "AttentionAverages": "core.averages", "AveragesMismatchError": "core.averages",
    "compute_average_attention": "core.averages",
    "Encoded": "core.layout", "encode": "core.layout",
    "OFFLINE_MODELS": "core.models", "ModelNotAvailableError": "core.models", "describe": "core.models",
    "load_model": "core.models",
    "UnsupportedModelError": "core.hooks", "mix_heads": "core.hooks", "hook_names": "core.hooks",
    "replace_heads": "core.replace", "patch_attention": "core.replace", "record_attention": "core.replace",
    "TASKS": "settings.tasks", "DataError": "settings.tasks", "Task": "settings.tasks", "TaskSplit": "settings.tasks",
    "get_task": "settings.tasks", "load_task": "settings.tasks",
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
