"""Process settings that make CPU training faster; kept import-light so the CLI can apply them before torch loads."""

# glibc returns freed memory to the OS eagerly; training frees and re-maps the same large buffers every step.
# These thresholds keep them mapped: about 1.9x faster CPU training on small machines (see BENCHMARKS.md).
ALLOCATOR = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184"
