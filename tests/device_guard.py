"""A device-policy stub: runs code paths as if the model lived on an accelerator, on a machine without one.

The model goes to the ``meta`` device (shapes, no data); ``ModelDeviceGuard`` is a torch function mode that
- fails, naming the operation, when a tensor on the model's device meets a CPU tensor in one operation (a
  0-dim CPU scalar is allowed, as it is on a GPU), or when a matrix product (the model's or the probe's) runs
  on the CPU while the model is on its device;
- stands in for copying results back to the CPU: ``.cpu()``, ``.to("cpu")``, ``.item()``, ``.tolist()`` and
  truth values of meta tensors give zeros of the right shape on the CPU, so a path runs to its end and writes its
  results (whose values mean nothing); ``.numpy()`` of a tensor on the model's device fails, as on a GPU;
- records the integer tensors (ids, masks, labels, indices) moved to the model's device (``moved``: their shapes),
  so a test can tell a batch's rows from a whole split copied for every batch;
and ``autocast_stub`` replaces ``torch.autocast`` to record the device type each autocast was opened for (a
real autocast on "meta" does not exist) and to report it as enabled to ``device.autocast_dtype``.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

T = torch.Tensor
PRODUCTS = {torch.nn.functional.linear, torch.matmul, torch.einsum, torch.bmm, torch.mm, torch.addmm,
            torch.baddbmm, T.__matmul__, T.matmul, T.bmm, T.mm}
# copies between devices are what moving to and from the model's device is made of
TRANSFERS = {T.to, T.cpu, T.copy_, T.cuda, T.__repr__, T.__format__, T.device.__get__,
             torch._has_compatible_shallow_copy_type}  # (nn.Module.to)
COPY_OUT = {T.cpu, T.item, T.tolist, T.__bool__, T.__int__, T.__float__, T.__index__}  # not numpy: it fails on a GPU


class DeviceMixError(AssertionError):
    pass


def _on_cpu(t: torch.Tensor):
    return torch.zeros(t.shape, dtype=t.dtype)


def _target_device(args, kwargs):
    for a in (*args[1:], kwargs.get("device")):
        if isinstance(a, (str, torch.device)):
            return torch.device(a)
        if isinstance(a, torch.Tensor):
            return a.device
    return None


class ModelDeviceGuard(TorchFunctionMode):
    def __init__(self, device: str = "meta"):
        super().__init__()
        self.device = torch.device(device)
        self.checked = 0
        self.moved = []

    def __enter__(self):
        from torch.fx.experimental import _config

        # nonzero on meta: assume every element is nonzero (shapes only; the values mean nothing anyway)
        self._nonzero = _config.meta_nonzero_assume_all_nonzero
        _config.meta_nonzero_assume_all_nonzero = True
        return super().__enter__()

    def __exit__(self, *exc):
        from torch.fx.experimental import _config

        _config.meta_nonzero_assume_all_nonzero = self._nonzero
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.device == self.device:
            if func is T.numpy:
                raise DeviceMixError(f"numpy() of a tensor on the model's device ({self.device}): bring it to the CPU "
                                     f"first")
            if func in COPY_OUT:
                return func(_on_cpu(first), *args[1:], **kwargs)
            if func is T.to and _target_device(args, kwargs) == torch.device("cpu"):
                dtypes = [a for a in (*args[1:], kwargs.get("dtype")) if isinstance(a, torch.dtype)]
                return _on_cpu(first).to(dtypes[0]) if dtypes else _on_cpu(first)
        self.checked += 1
        if (func is T.to and isinstance(first, torch.Tensor) and first.device != self.device
                and _target_device(args, kwargs) == self.device and not first.is_floating_point()):
            self.moved.append(tuple(first.shape))
        if func not in TRANSFERS:
            tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            devices = {t.device for t in tensors if t.dim() > 0 or t.device == self.device}
            if self.device in devices and len(devices) > 1:
                raise DeviceMixError(f"{getattr(func, '__name__', func)} mixes tensors on the model's device "
                                     f"({self.device}) with tensors on {sorted(str(d) for d in devices - {self.device})}")
            if func in PRODUCTS and tensors and self.device not in devices:
                raise DeviceMixError(f"{getattr(func, '__name__', func)} ran on {sorted(map(str, devices))} while "
                                     f"the model is on {self.device}")
        return func(*args, **kwargs)


@contextmanager
def autocast_stub(monkeypatch):
    """Record the device types autocast is opened for (list of (device_type, dtype)); inside one, report it
    enabled for that device type with its dtype."""
    opened, active = [], []

    class Recorder:
        def __init__(self, device_type, dtype=None, enabled=True, **_):
            self.device_type, self.dtype, self.enabled = device_type, dtype, enabled
            if enabled:
                opened.append((device_type, dtype))

        def __enter__(self):
            active.append(self)

        def __exit__(self, *exc):
            active.pop()

    real_enabled, real_dtype, adamw = torch.is_autocast_enabled, torch.get_autocast_dtype, torch.optim.AdamW
    # fused AdamW exists for real devices only; the probe's optimizer on "meta" runs the plain one
    monkeypatch.setattr(torch.optim, "AdamW", lambda *a, fused=None, **k: adamw(*a, **k))
    monkeypatch.setattr(torch, "autocast", Recorder)
    def on(kind):
        return bool(active) and active[-1].enabled and active[-1].device_type == kind

    monkeypatch.setattr(torch, "is_autocast_enabled", lambda kind=None: on(kind) if kind else real_enabled())
    monkeypatch.setattr(torch, "get_autocast_dtype", lambda kind: active[-1].dtype if on(kind) else real_dtype(kind))
    yield opened
