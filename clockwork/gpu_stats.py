"""GPU utilisation, decoder utilisation and memory through NVML (``nvidia-ml-py``)."""

from __future__ import annotations

import os

from clockwork import settings


class GpuStats:
    def __init__(self, index: int = 0):
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        # Inside a Ray worker CUDA_VISIBLE_DEVICES renumbers cards; NVML sees physical indexes.
        visible = settings.visible_cuda_devices()
        physical = int(visible[index]) if visible and visible[index].isdigit() else index
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(physical)
        self.pid = os.getpid()

    def read(self) -> dict:
        nv, h = self._nvml, self.handle
        util = nv.nvmlDeviceGetUtilizationRates(h)
        dec, _period = nv.nvmlDeviceGetDecoderUtilization(h)
        mem = nv.nvmlDeviceGetMemoryInfo(h)
        mine = 0
        try:
            for proc in nv.nvmlDeviceGetComputeRunningProcesses(h):
                if proc.pid == self.pid and proc.usedGpuMemory:
                    mine = int(proc.usedGpuMemory)
        except nv.NVMLError:
            pass
        return {
            "gpu_util": float(util.gpu),
            "dec_util": float(dec),
            "mem_used": float(mem.used),
            "mem_total": float(mem.total),
            "process_mem": float(mine),
        }
