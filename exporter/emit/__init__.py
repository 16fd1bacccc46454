"""Sinks: where events and alerts leave the agent."""
