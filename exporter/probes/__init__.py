"""Kernel side: BPF program life cycle, the record layout, cgroup selection."""
