"""Attack and benign scenarios run in throwaway runc containers.

library  the scenarios as data (library/*.yaml), loaded and checked with file:line errors
runc     throwaway OCI containers at kubelet-shaped cgroup paths
lab      a scenario -> a registered Pod (stand-in API server) + a container; payload server
agent    the real agent as a subprocess, and its alerts as they arrive
session  run trials, judge them (fired / late / missed / clean / false-positive)
demo, verify, cli   `provex demo` and `provex verify`
"""
