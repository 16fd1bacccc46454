"""Event sources: live (BCC ring buffer) and replay (JSON lines)."""
