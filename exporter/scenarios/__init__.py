"""Attack and benign scenarios run in throwaway runc containers."""
