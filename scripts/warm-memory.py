#!/usr/bin/env python3
"""Faults in N MiB of anonymous memory in 2 MiB (transparent huge) pages, then frees it.

    python3 scripts/warm-memory.py [MIB]        (default 1024)

On a virtual machine whose free memory goes back to the hypervisor (free page reporting, as on
this project's Firecracker VM: the virtio balloon reports free blocks of 2 MiB and up), the next
2 MiB pages a process faults in come from memory the host must back again first: measured here,
2.4-2.6 ms a MiB against 0.15 ms a MiB for memory just freed, while 4 KiB pages cost 0.45 and
0.27 ms. Run right before a benchmark (scripts/ab-replay.sh with WARM_MIB), the memory it frees
is what the next process's huge pages come from: the state of a server whose memory is backed,
not of a freshly started VM. It prints what the population took, so the state the run started
from is on record: a second or more per GiB means the memory was cold.
"""
import mmap
import sys
import time

MADV_POPULATE_WRITE = 23  # Linux 5.14; older kernels: each page touched instead

mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
size = mib << 20
start = time.monotonic()
m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_HUGEPAGE)
try:
    m.madvise(MADV_POPULATE_WRITE)
except OSError:
    for i in range(0, size, 4096):
        m[i] = 1
m.close()
took = time.monotonic() - start
print(f"warm-memory: {mib} MiB faulted in and freed in {took:.2f} s ({took * 1000 / mib:.2f} ms a MiB)",
      file=sys.stderr)
